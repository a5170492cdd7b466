"""Training data plane throughput: orchestrator + learner over the broker vs the same parts in-process.

End to end: a local broker, the learner and the orchestrator as processes, one train run with a
fixed step budget; transitions/s is the run's env steps over the time from StartRun until the
learner has trained every produced transition. In-process: the same actors, messages and learner
trainer wired directly (Actor.collect -> transition_batch -> bytes -> decode_batch ->
RunTrainer.add/update, the new policy loaded into the actors after each update), no broker.
Also printed: the policy lag (versions) and the learner's samples/s from the run's LearnerStats on
gaelp.learner-metrics.v1. With CUDA present the end-to-end run is repeated with the learner on it.

    .venv/bin/python -m benchmarks.dataplane [--steps 18432] [--actors 1] [--envs-per-actor 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import torch

from gaelp.bus import LEARNER_METRICS
from gaelp.bus.local_broker import LocalBroker
from gaelp.bus.reader import read_topic
from gaelp.config import GaelpSettings, load_settings
from gaelp.embedded.processes import ServiceProcess
from gaelp.rl.spaces import ActionLayout, flat_observation_dim
from gaelp.v1 import events_pb2, learner_pb2, learner_pb2_grpc, orchestrator_pb2, orchestrator_pb2_grpc
from learner.batches import decode_batch
from learner.trainer import build_run_trainer
from orchestrator.actor import Actor
from orchestrator.environments import resolve_shipped
from orchestrator.messages import transition_batch
from orchestrator.policy import PolicyHolder


@dataclass(frozen=True)
class Budget:
    steps: int
    actors: int
    envs_per_actor: int
    chunk_steps: int
    rollout_samples: int
    max_rollouts_ahead: float
    hyperparameters: dict[str, Any]


# ---- in-process ------------------------------------------------------------------------------------
def in_process(budget: Budget) -> tuple[float, float]:
    """(transitions/s, learner samples/s) with no broker and no processes."""
    settings = _settings(budget)
    config = settings.orchestrator
    factory = resolve_shipped(config.environment_id, config.environment_version).factory
    envs = [factory(budget.envs_per_actor, 0, 1_000 + index) for index in range(budget.actors)]
    space_env = factory(1, 0, 0)
    observation_space, action_space = space_env.single_observation_space, space_env.single_action_space
    holder = PolicyHolder(settings.training, observation_space, action_space)
    trainer = build_run_trainer("bench", settings.training, settings.learner, observation_space, action_space)
    obs_dim = flat_observation_dim(observation_space)
    layout = ActionLayout.from_space(action_space)
    holder.agent.load_policy_state(trainer.agent.policy_state())
    actors = [Actor(env, 1_000 + index) for index, env in enumerate(envs)]
    steps, sequence, update_seconds, updated_samples = 0, 0, 0.0, 0
    started = time.perf_counter()
    while steps < budget.steps or trainer.pending:
        if steps < budget.steps:
            for index, actor in enumerate(actors):
                chunk = actor.collect(holder.agent, budget.chunk_steps)
                raw = transition_batch(
                    chunk,
                    "bench",
                    f"bench-actor-{index}",
                    f"bench:{index}:{sequence}",
                    trainer.version,
                    "level-0",
                ).SerializeToString()
                batch = decode_batch(events_pb2.TransitionBatch.FromString(raw), obs_dim, layout, raw)
                trainer.add(batch)
                steps += chunk.samples
            sequence += 1
        if trainer.ready() or (steps >= budget.steps and trainer.pending):
            result = trainer.update()
            update_seconds += result.seconds
            updated_samples += result.samples
            holder.agent.load_policy_state(trainer.agent.policy_state())
    elapsed = time.perf_counter() - started
    for env in envs:
        env.close()
    space_env.close()
    return steps / elapsed, updated_samples / max(update_seconds, 1e-9)


# ---- end to end ------------------------------------------------------------------------------------
def end_to_end(budget: Budget, bootstrap: str, workdir: Path, device: str) -> tuple[float, list[Any]]:
    """(transitions/s, the run's LearnerStats) with the learner and orchestrator as processes."""
    common = {
        "GAELP_KAFKA_BOOTSTRAP": bootstrap,
        "GAELP_KAFKA_ENABLE_IDEMPOTENCE": "false",
        "GAELP_KAFKA_ACKS": "1",
        "GAELP_TRAINING_HYPERPARAMETERS": json.dumps({"ppo": budget.hyperparameters}),
    }
    run_id = f"bench{int(time.time())}{device}"
    learner = ServiceProcess(
        "learner",
        {
            **common,
            "GAELP_STORAGE_CHECKPOINT_DIR": str(workdir / "checkpoints"),
            "GAELP_LEARNER_GROUP_ID": f"learner-{run_id}",
            "GAELP_LEARNER_DEVICE": device,
            "GAELP_LEARNER_ROLLOUT_SAMPLES": str(budget.rollout_samples),
            "GAELP_LEARNER_MAX_POLICY_LAG": "1000",
        },
        workdir / "logs",
    )
    orchestrator = ServiceProcess(
        "orchestrator",
        {
            **common,
            "GAELP_DATABASE_URL": f"sqlite:///{workdir / 'runs.db'}",
            "GAELP_ORCHESTRATOR_LEARNER_TARGET": learner.target,
            "GAELP_ORCHESTRATOR_ACTORS": str(budget.actors),
            "GAELP_ORCHESTRATOR_ENVS_PER_ACTOR": str(budget.envs_per_actor),
            "GAELP_ORCHESTRATOR_CHUNK_STEPS": str(budget.chunk_steps),
            "GAELP_ORCHESTRATOR_MAX_ROLLOUTS_AHEAD": str(budget.max_rollouts_ahead),
            # Evaluations are the curriculum's cost, not the data plane's: at most one in this budget.
            "GAELP_ORCHESTRATOR_CURRICULUM": json.dumps(
                {"evaluation_envs": 16, "evaluation_every_steps": budget.steps}
            ),
        },
        workdir / "logs",
    )
    try:
        learner.start()
        orchestrator.start()
        with (
            grpc.insecure_channel(orchestrator.target) as o_channel,
            grpc.insecure_channel(learner.target) as l_channel,
        ):
            control = orchestrator_pb2_grpc.OrchestratorStub(o_channel)
            stats = learner_pb2_grpc.LearnerStub(l_channel)
            config = json.dumps({"kind": "train", "max_env_steps": budget.steps})
            started = time.perf_counter()
            control.StartRun(orchestrator_pb2.StartRunRequest(run_id=run_id, config_json=config), timeout=30)
            while True:
                status = control.GetRunStatus(orchestrator_pb2.RunIdRequest(run_id=run_id), timeout=10)
                if status.state in {"completed", "failed"}:
                    break
                time.sleep(0.05)
            if status.state == "failed":
                raise RuntimeError(f"run failed: {status.detail}\n{orchestrator.log_tail()}")
            # Everything up to the last full rollout is trained; the remainder stays pending.
            trainable = status.env_steps - status.env_steps % budget.rollout_samples
            while True:
                learner_stats = stats.GetLearnerStats(
                    learner_pb2.GetLearnerStatsRequest(run_id=run_id), timeout=10
                )
                if learner_stats.trained_samples >= trainable:
                    break
                time.sleep(0.05)
            elapsed = time.perf_counter() - started
    finally:
        orchestrator.stop()
        learner.stop()
    records = asyncio.run(read_topic(bootstrap, LEARNER_METRICS.name))
    run_stats = [events_pb2.LearnerStats.FromString(r.value) for r in records if r.key == run_id.encode()]
    return learner_stats.trained_samples / elapsed, run_stats


def _settings(budget: Budget) -> GaelpSettings:
    return load_settings(
        training={"hyperparameters": {"ppo": budget.hyperparameters}},
        learner={"rollout_samples": budget.rollout_samples, "device": "cpu", "max_policy_lag": 1000},
        orchestrator={
            "actors": budget.actors,
            "envs_per_actor": budget.envs_per_actor,
            "chunk_steps": budget.chunk_steps,
        },
    )


def _steady_rate(run_stats: list[Any]) -> float:
    """Transitions trained between the first and the last update over the time between them
    (leaves out process start, group joins and the run's first evaluation)."""
    if len(run_stats) < 2:
        return float("nan")
    first, last = run_stats[0], run_stats[-1]
    seconds = last.created_at.ToNanoseconds() / 1e9 - first.created_at.ToNanoseconds() / 1e9
    return (last.trained_samples - first.trained_samples) / max(seconds, 1e-9)


def _report_stats(label: str, run_stats: list[Any]) -> None:
    lag_max = np.array([s.policy_lag_max for s in run_stats], dtype=float)
    lag_mean = np.array([s.policy_lag_mean for s in run_stats], dtype=float)
    rates = np.array([s.samples_per_second for s in run_stats], dtype=float)
    print(f"  [{label}] updates: {len(run_stats)}")
    print(
        f"  [{label}] policy lag per update, mean over its batches: median {np.median(lag_mean):.2f}"
        f"  p99 {np.percentile(lag_mean, 99):.2f} versions"
    )
    print(
        f"  [{label}] policy lag per update, oldest batch: median {np.median(lag_max):.0f}"
        f"  p99 {np.percentile(lag_max, 99):.2f}  max {lag_max.max():.0f} versions"
    )
    print(
        f"  [{label}] learner samples/s (update time only): median {np.median(rates):,.0f}"
        f"  p10 {np.percentile(rates, 10):,.0f}  p90 {np.percentile(rates, 90):,.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=73_728, help="env steps (transitions) per run")
    parser.add_argument("--actors", type=int, default=1)
    parser.add_argument("--envs-per-actor", type=int, default=64)
    parser.add_argument("--chunk-steps", type=int, default=24)
    parser.add_argument("--rollout-samples", type=int, default=3072)
    parser.add_argument("--max-rollouts-ahead", type=float, default=2.0)
    parser.add_argument(
        "--hyperparameters",
        default='{"batch_size": 256, "n_epochs": 4}',
        help="PPO config overrides as JSON, for both wirings",
    )
    args = parser.parse_args()
    budget = Budget(
        args.steps,
        args.actors,
        args.envs_per_actor,
        args.chunk_steps,
        args.rollout_samples,
        args.max_rollouts_ahead,
        json.loads(args.hyperparameters),
    )
    torch.set_num_threads(1)
    print(f"data plane benchmark: {budget}")
    local_rate, local_learner_rate = in_process(budget)
    print(
        f"in-process (no broker):   {local_rate:,.0f} transitions/s;"
        f" learner {local_learner_rate:,.0f} samples/s in updates"
    )
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    with tempfile.TemporaryDirectory(prefix="gaelp-dataplane-") as tmp, LocalBroker() as broker:
        for device in devices:
            rate, run_stats = end_to_end(budget, broker.bootstrap, Path(tmp) / device, device)
            print(
                f"end to end, learner on {device}: {rate:,.0f} transitions/s from StartRun"
                f" = {rate / local_rate:.2f} x in-process"
            )
            steady = _steady_rate(run_stats)
            print(
                f"end to end, learner on {device}: {steady:,.0f} transitions/s steady state (first to last"
                f" update) = {steady / local_rate:.2f} x in-process"
            )
            _report_stats(device, run_stats)


if __name__ == "__main__":
    main()
