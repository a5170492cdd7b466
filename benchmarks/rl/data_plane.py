"""Training a gymnasium reference task through the data plane: broker, environment registry,
learner and orchestrator as separate processes, the task resolved from its registered spec.

The run gets the algorithm, hyperparameters, seed and env-step budget of the in-process benchmark.
Actors step as many lanes as the in-process vector env and hand over one chunk per update of the
agent (PPO: n_steps, SAC/DQN: train_freq steps), and wait for the policy trained on it before
going on (`max_rollouts_ahead` 1), so the data each update sees is what `Agent.learn` would have
given it; what differs is the path (messages over the broker, processes, gRPC). When the run has
used its budget, the learner's newest policy is fetched and evaluated deterministically in this
process with the same episodes as the in-process run. wall_s is from StartRun to the last update.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import yaml

from gaelp.embedded.processes import ServiceProcess, start_together
from gaelp.rl import make_agent
from gaelp.rl.rollout import make_vector_env
from gaelp.v1 import learner_pb2, learner_pb2_grpc, orchestrator_pb2, orchestrator_pb2_grpc
from orchestrator.policy import policy_weights

SPECS_DIR = Path(__file__).resolve().parents[2] / "configs" / "environments"
POLICY_WAIT_S = 120.0  # actors wait this long for the next policy before going on without it
LEARNER_FETCH_MAX_WAIT_MS = 5


def registered_spec(env_id: str, specs_dir: Path = SPECS_DIR) -> tuple[str, str]:
    """(id, version) of the registry spec whose config names the gymnasium env id."""
    for path in sorted(specs_dir.glob("*.yaml")):
        spec = yaml.safe_load(path.read_text())
        if (spec.get("config") or {}).get("env_id") == env_id:
            return str(spec["id"]), str(spec["version"])
    raise LookupError(f"no environment spec in {specs_dir} has config.env_id {env_id}")


def agent_rollout_steps(algo: str, env_id: str, gaelp_config: dict[str, Any]) -> int:
    """The vector steps the agent consumes in one update (PPO n_steps, SAC/DQN train_freq)."""
    probe_env = make_vector_env(env_id, 1)
    agent = make_agent(algo, probe_env.single_observation_space, probe_env.single_action_space,
                       gaelp_config, device="cpu")
    probe_env.close()
    return agent.rollout_steps()


def service_envs(algo: str, env_id: str, seed: int, lanes: int, gaelp_config: dict[str, Any],
                 bootstrap: str, work_dir: Path, steps: int, learner_target: str,
                 registry_target: str, chunk_steps: int
                 ) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """GAELP_* settings of the registry, learner and orchestrator processes. `algo` is a built-in
    algorithm or the module:Class entry point of a user's agent (its config then `gaelp_config`)."""
    spec_id, spec_version = registered_spec(env_id)
    agent_settings = (
        {"GAELP_TRAINING_AGENT_ENTRY_POINT": algo, "GAELP_TRAINING_AGENT_CONFIG": json.dumps(gaelp_config)}
        if ":" in algo else
        {"GAELP_TRAINING_ALGORITHM": algo, "GAELP_TRAINING_HYPERPARAMETERS": json.dumps({algo: gaelp_config})}
    )
    common = {
        **agent_settings,
        "GAELP_KAFKA_BOOTSTRAP": bootstrap,
        "GAELP_KAFKA_ENABLE_IDEMPOTENCE": "false",
        "GAELP_KAFKA_ACKS": "1",
        "GAELP_TRAINING_SEED": str(seed),
        "GAELP_TRAINING_SPACE_ENTRY_POINT": "gymnasium:make",
        "GAELP_TRAINING_SPACE_KWARGS": json.dumps({"id": env_id}),
        "GAELP_TELEMETRY_EXPORTER": "none",
        "OMP_NUM_THREADS": "1",  # one torch thread per process, as in the in-process run
    }
    registry = {
        **common,
        "GAELP_DATABASE_URL": f"sqlite:///{work_dir / 'registry.db'}",
        "GAELP_ENVIRONMENT_REGISTRY_SPECS_DIR": str(SPECS_DIR),
    }
    learner = {
        **common,
        "GAELP_STORAGE_CHECKPOINT_DIR": str(work_dir / "checkpoints"),
        "GAELP_LEARNER_GROUP_ID": f"learner-{work_dir.name}",
        "GAELP_LEARNER_DEVICE": "cpu",
        "GAELP_LEARNER_ROLLOUT_SAMPLES": "1",  # the agent's own update size decides
        "GAELP_LEARNER_CHECKPOINT_EVERY_UPDATES": "100",
        # Tansu answers a fetch that found no data only when fetch_max_wait_ms is over, even if a
        # record lands meanwhile; the learner waits for every chunk (one update each), so its fetches
        # are held briefly: at the default 50 ms, SAC's one-step rounds spent half their time there.
        "GAELP_KAFKA_FETCH_MAX_WAIT_MS": str(LEARNER_FETCH_MAX_WAIT_MS),
    }
    orchestrator = {
        **common,
        "GAELP_DATABASE_URL": f"sqlite:///{work_dir / 'runs.db'}",
        "GAELP_ORCHESTRATOR_LEARNER_TARGET": learner_target,
        "GAELP_ORCHESTRATOR_REGISTRY_TARGET": registry_target,
        "GAELP_ORCHESTRATOR_ENVIRONMENT_ID": spec_id,
        "GAELP_ORCHESTRATOR_ENVIRONMENT_VERSION": spec_version,
        "GAELP_ORCHESTRATOR_ACTORS": "1",
        "GAELP_ORCHESTRATOR_ENVS_PER_ACTOR": str(lanes),
        "GAELP_ORCHESTRATOR_CHUNK_STEPS": str(chunk_steps),
        "GAELP_ORCHESTRATOR_MAX_ROLLOUTS_AHEAD": "1",
        "GAELP_ORCHESTRATOR_MAX_POLICY_WAIT_S": str(POLICY_WAIT_S),
        "GAELP_ORCHESTRATOR_CHECKPOINT_EVERY_BATCHES": "50",
        # One task, no early end: the run trains for its whole budget, as the in-process run does.
        "GAELP_ORCHESTRATOR_CURRICULUM": json.dumps({
            "levels": [0], "evaluation_envs": 4, "evaluation_every_steps": steps,
            "min_env_steps": steps, "max_env_steps_per_task": steps + 1, "advance_threshold": 1e9,
        }),
    }
    return registry, learner, orchestrator


def _learner_stats(target: str, run_id: str) -> Any:
    with grpc.insecure_channel(target) as channel:
        stub = learner_pb2_grpc.LearnerStub(channel)
        try:
            return stub.GetLearnerStats(learner_pb2.GetLearnerStatsRequest(run_id=run_id), timeout=10)
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise


def _poll(condition: Any, timeout_s: float, what: str, logs: Any) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}\n{logs()}")


def train_through_data_plane(algo: str, env_id: str, steps: int, seed: int, lanes: int,
                             gaelp_config: dict[str, Any], bootstrap: str, work_dir: Path,
                             chunk_steps: int | None = None, extra_env: dict[str, str] | None = None,
                             timeout_s: float = 7200.0) -> tuple[Any, dict[str, Any]]:
    """Train one seed; returns (an agent holding the learner's final policy, figures). chunk_steps
    defaults to one update of the agent; a multiple of it batches several updates' data in one
    message (fewer round trips, a policy lag of up to that many steps)."""
    chunk = chunk_steps or agent_rollout_steps(algo, env_id, gaelp_config)
    work_dir.mkdir(parents=True, exist_ok=True)
    logs = work_dir / "logs"
    registry = ServiceProcess("environment_registry", {}, logs)
    learner = ServiceProcess("learner", {}, logs)
    orchestrator = ServiceProcess("orchestrator", {}, logs)
    registry_env, learner_env, orchestrator_env = service_envs(
        algo, env_id, seed, lanes, gaelp_config, bootstrap, work_dir, steps, learner.target, registry.target,
        chunk,
    )
    for process, settings in ((registry, registry_env), (learner, learner_env),
                              (orchestrator, orchestrator_env)):
        process.env.update({**settings, **(extra_env or {})})
    run_id = f"{algo.rsplit(':', 1)[-1].lower()}-{env_id.lower()}-{seed}-{os.getpid()}"

    def all_logs() -> str:
        return "\n".join(p.log_tail() for p in (orchestrator, learner, registry))

    try:
        start_together(registry, learner)  # the orchestrator resolves its environment at the registry
        orchestrator.start()
        with grpc.insecure_channel(orchestrator.target) as channel:
            stub = orchestrator_pb2_grpc.OrchestratorStub(channel)
            started = time.perf_counter()
            stub.StartRun(orchestrator_pb2.StartRunRequest(
                run_id=run_id, config_json=json.dumps({"kind": "train", "max_env_steps": steps})), timeout=60)

            def finished() -> Any:
                status = stub.GetRunStatus(orchestrator_pb2.RunIdRequest(run_id=run_id), timeout=10)
                if status.state == "failed":
                    raise RuntimeError(f"run failed: {status.detail}\n{all_logs()}")
                return status if status.state == "completed" else None

            status = _poll(finished, timeout_s, "the run to use its budget", all_logs)
        # Every chunk is one update, so the learner is done when it has trained all the run's steps.
        stats = _poll(lambda: (s := _learner_stats(learner.target, run_id)) is not None
                      and s.trained_samples >= status.env_steps and s, 300, "the last update", all_logs)
        wall = time.perf_counter() - started
        with grpc.insecure_channel(learner.target) as channel:
            update = learner_pb2_grpc.LearnerStub(channel).GetPolicy(
                learner_pb2.GetPolicyRequest(run_id=run_id), timeout=30)
    finally:
        for process in (orchestrator, learner, registry):
            process.stop()
    env = make_vector_env(env_id, 1)
    agent = make_agent(algo, env.single_observation_space, env.single_action_space, gaelp_config,
                       device="cpu", seed=seed)
    env.close()
    agent.load_policy_state(policy_weights(update))
    figures = {
        "wall_s": wall,
        "sps": status.env_steps / wall,
        "env_steps": int(status.env_steps),
        "trained_samples": int(stats.trained_samples),
        "policy_version": int(update.version),
        "policy_lag_max": int(stats.policy_lag_max),
        "chunk_steps": chunk,
    }
    return agent, figures


def deterministic_act(agent: Any) -> Any:
    def act(obs: np.ndarray) -> Any:
        action, _, _ = agent.act(np.asarray(obs, dtype=np.float32)[None], deterministic=True)
        return agent.env_actions(action)[0]

    return act
