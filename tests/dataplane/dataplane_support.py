"""Helpers shared by the data-plane tests and benchmark: service processes, topic reads, batches."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import torch

from gaelp.bus import TRANSITIONS
from gaelp.bus.reader import read_topic as read_whole_topic
from gaelp.config import load_settings
from gaelp.embedded.processes import ServiceProcess
from gaelp.v1 import events_pb2, learner_pb2, learner_pb2_grpc, orchestrator_pb2, orchestrator_pb2_grpc

# Small budgets: a round is 1 actor x 4 campaigns x 24 steps = 96 transitions, and one PPO update
# trains two batches; the whole data-plane suite has to fit in a few minutes on two cores.
ENVS_PER_ACTOR = 4
CHUNK_STEPS = 24
BATCH_SAMPLES = ENVS_PER_ACTOR * CHUNK_STEPS
ROLLOUT_SAMPLES = 2 * BATCH_SAMPLES
HYPERPARAMETERS = {"ppo": {"n_steps": CHUNK_STEPS, "batch_size": 96, "n_epochs": 2}}


def kafka_env(bootstrap: str) -> dict[str, str]:
    return {
        "GAELP_KAFKA_BOOTSTRAP": bootstrap,
        "GAELP_KAFKA_ENABLE_IDEMPOTENCE": "false",
        "GAELP_KAFKA_ACKS": "1",
        "GAELP_TRAINING_HYPERPARAMETERS": json.dumps(HYPERPARAMETERS),
    }


def learner_env(bootstrap: str, checkpoint_dir: Path, group_id: str, **extra: object) -> dict[str, str]:
    env = {
        **kafka_env(bootstrap),
        "GAELP_STORAGE_CHECKPOINT_DIR": str(checkpoint_dir),
        "GAELP_LEARNER_GROUP_ID": group_id,
        "GAELP_LEARNER_DEVICE": "cpu",
        "GAELP_LEARNER_ROLLOUT_SAMPLES": str(ROLLOUT_SAMPLES),
        "GAELP_LEARNER_CHECKPOINT_EVERY_UPDATES": "2",
        # Nothing may be stale in the accounting tests: every produced batch must be trained.
        "GAELP_LEARNER_MAX_POLICY_LAG": "1000",
    }
    env.update({f"GAELP_LEARNER_{k.upper()}": str(v) for k, v in extra.items()})
    return env


def orchestrator_env(bootstrap: str, database_path: Path, learner_target: str, actors: int = 1,
                     **extra: object) -> dict[str, str]:
    env = {
        **kafka_env(bootstrap),
        "GAELP_DATABASE_URL": f"sqlite:///{database_path}",
        "GAELP_ORCHESTRATOR_LEARNER_TARGET": learner_target,
        "GAELP_ORCHESTRATOR_ACTORS": str(actors),
        "GAELP_ORCHESTRATOR_ENVS_PER_ACTOR": str(ENVS_PER_ACTOR),
        "GAELP_ORCHESTRATOR_CHUNK_STEPS": str(CHUNK_STEPS),
        "GAELP_ORCHESTRATOR_MAX_ROLLOUTS_AHEAD": "2",
        "GAELP_ORCHESTRATOR_MAX_POLICY_WAIT_S": "1.0",
        "GAELP_ORCHESTRATOR_CURRICULUM": json.dumps({"evaluation_envs": 8, "evaluation_every_steps": 1152}),
    }
    env.update({f"GAELP_ORCHESTRATOR_{k.upper()}": str(v) for k, v in extra.items()})
    return env


def start_run(orchestrator: ServiceProcess, run_id: str, max_env_steps: int) -> orchestrator_pb2.RunStatus:
    with grpc.insecure_channel(orchestrator.target) as channel:
        stub = orchestrator_pb2_grpc.OrchestratorStub(channel)
        config = json.dumps({"kind": "train", "max_env_steps": max_env_steps})
        return stub.StartRun(orchestrator_pb2.StartRunRequest(run_id=run_id, config_json=config), timeout=30)


def run_status(orchestrator: ServiceProcess, run_id: str) -> orchestrator_pb2.RunStatus:
    with grpc.insecure_channel(orchestrator.target) as channel:
        stub = orchestrator_pb2_grpc.OrchestratorStub(channel)
        return stub.GetRunStatus(orchestrator_pb2.RunIdRequest(run_id=run_id), timeout=10)


def learner_stats(learner: ServiceProcess, run_id: str) -> events_pb2.LearnerStats | None:
    with grpc.insecure_channel(learner.target) as channel:
        stub = learner_pb2_grpc.LearnerStub(channel)
        try:
            return stub.GetLearnerStats(learner_pb2.GetLearnerStatsRequest(run_id=run_id), timeout=10)
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise


def wait_until(condition: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.2,
               logs: Callable[[], str] | None = None) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}" + (f"\n{logs()}" if logs else ""))


def read_topic(bootstrap: str, topic: str) -> list[Any]:
    """Every record on the topic from the beginning to its current end (no consumer group)."""
    return asyncio.run(read_whole_topic(bootstrap, topic))


def produced_batches(bootstrap: str, run_id: str) -> list[events_pb2.TransitionBatch]:
    """The run's TransitionBatch messages as they sit on gaelp.transitions.v1."""
    batches = [events_pb2.TransitionBatch.FromString(r.value) for r in read_topic(bootstrap, TRANSITIONS.name)
               if r.value is not None and r.key is not None and r.key.decode().startswith(f"{run_id}-actor-")]
    return [b for b in batches if b.run_id == run_id]


def stored_run_document(database_path: Path, run_id: str) -> dict[str, Any]:
    with sqlite3.connect(database_path) as connection:
        row = connection.execute("SELECT document FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    assert row is not None, f"run {run_id} is not in the run store"
    return dict(json.loads(row[0]))


def latest_manifest(checkpoint_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    root = checkpoint_dir / "learner"
    if not root.exists():
        return None
    done = sorted(p for p in root.iterdir() if p.name.startswith("ckpt-"))
    if not done:
        return None
    return done[-1], json.loads((done[-1] / "manifest.json").read_text())


def run_entry(manifest: dict[str, Any], run_id: str) -> dict[str, Any] | None:
    return next((entry for entry in manifest["runs"] if entry["run_id"] == run_id), None)


def pending_batch_ids(checkpoint: Path, entry: dict[str, Any]) -> list[str]:
    """Ids of the batches a checkpoint holds as received but not yet trained."""
    state = torch.load(checkpoint / entry["state_file"], weights_only=False, map_location="cpu")
    return [events_pb2.TransitionBatch.FromString(raw).batch_id for raw in state["extra"]["pending"]]


def training_settings() -> Any:
    return load_settings(
        training={"hyperparameters": HYPERPARAMETERS},
        learner={"rollout_samples": ROLLOUT_SAMPLES, "device": "cpu", "max_policy_lag": 1000},
        orchestrator={"envs_per_actor": ENVS_PER_ACTOR, "chunk_steps": CHUNK_STEPS},
    )


def root_buffer(array: np.ndarray) -> object:
    """The object at the bottom of an array's chain of views."""
    base: object = array
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    return base


def sample_chunk(seed: int = 3) -> tuple[Any, Any]:
    """One real chunk from the ad-market simulator and the (untrained) policy holder that made it."""
    from orchestrator.actor import Actor
    from orchestrator.environments import resolve_shipped
    from orchestrator.policy import PolicyHolder

    settings = training_settings()
    config = settings.orchestrator
    env = resolve_shipped(config.environment_id, config.environment_version).factory(ENVS_PER_ACTOR, 0, seed)
    holder = PolicyHolder(settings.training, env.single_observation_space, env.single_action_space)
    chunk = Actor(env, seed).collect(holder.agent, config.chunk_steps)
    env.close()
    return chunk, holder
