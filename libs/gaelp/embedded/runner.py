"""The embedded main job: a local broker, the services as processes, one run, a report.

What runs today is the end-to-end slice of the foundation: the orchestrator steps an environment with
a random policy and publishes one EpisodeSummary per episode; the metrics service consumes them and
answers GetRunSummary; the report shows that every episode arrived and that the consumer's span
continues the producer's trace.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import grpc

from gaelp.bus.local_broker import LocalBroker, free_port
from gaelp.config import GaelpSettings, load_settings
from gaelp.config.settings import CONFIG_ENV_VAR
from gaelp.embedded.processes import ServiceProcess
from gaelp.v1 import metrics_pb2, metrics_pb2_grpc, orchestrator_pb2, orchestrator_pb2_grpc

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_CONFIG = REPO_ROOT / "configs" / "development.yaml"


@contextlib.contextmanager
def broker_for(settings: GaelpSettings, log_dir: Path) -> Iterator[str]:
    if settings.kafka.bootstrap:
        yield settings.kafka.bootstrap
        return
    with LocalBroker(log_path=log_dir / "broker.log") as broker:
        print(f"local broker (Tansu, memory storage) on {broker.bootstrap}")
        yield broker.bootstrap


def service_env(settings: GaelpSettings, config: Path, bootstrap: str, span_file: Path) -> dict[str, str]:
    return {
        CONFIG_ENV_VAR: str(config),
        "GAELP_KAFKA_BOOTSTRAP": bootstrap,
        "GAELP_TELEMETRY_SPAN_FILE": str(span_file),
        "GAELP_STORAGE_DATA_DIR": settings.storage.data_dir,
        "GAELP_STORAGE_CHECKPOINT_DIR": settings.storage.checkpoint_dir,
        "GAELP_DATABASE_URL": settings.database.url,
    }


def wait_for(predicate: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.25)
    raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")


def linked_traces(span_file: Path) -> tuple[int, int]:
    """(episode events whose consumer span continues the producer's trace, events sent)."""
    spans = [json.loads(line) for line in span_file.read_text().splitlines() if line.strip()]
    sends = {s["span_id"]: s for s in spans if s["name"] == "gaelp.episodes.v1 send"}
    processed = [s for s in spans if s["name"] == "gaelp.episodes.v1 process"]
    linked = sum(
        1
        for s in processed
        if s["parent_span_id"] in sends and sends[s["parent_span_id"]]["trace_id"] == s["trace_id"]
    )
    return linked, len(sends)


def run_slice(settings: GaelpSettings, config: Path, episodes: int, log_dir: Path) -> int:
    span_file = log_dir / "spans.jsonl"
    span_file.unlink(missing_ok=True)
    with broker_for(settings, log_dir) as bootstrap:
        env = service_env(settings, config, bootstrap, span_file)
        metrics = ServiceProcess("metrics", {**env, "GAELP_METRICS_HTTP_PORT": str(free_port())}, log_dir)
        orchestrator = ServiceProcess("orchestrator", env, log_dir)
        try:
            metrics.start()
            orchestrator.start()
            print(f"services up: metrics {metrics.target}, orchestrator {orchestrator.target}")
            with grpc.insecure_channel(orchestrator.target) as channel:
                control = orchestrator_pb2_grpc.OrchestratorStub(channel)
                status = control.StartRun(
                    orchestrator_pb2.StartRunRequest(config_json=json.dumps({"episodes": episodes})),
                    timeout=10,
                )
                run_id = status.run_id
                print(f"run {run_id}: {episodes} random-policy episodes of {status.task}")
                wait_for(
                    lambda: control.GetRunStatus(
                        orchestrator_pb2.RunIdRequest(run_id=run_id), timeout=5
                    ).state in {"completed", "failed"},
                    300,
                    "the run to finish",
                )
                status = control.GetRunStatus(orchestrator_pb2.RunIdRequest(run_id=run_id), timeout=5)
            with grpc.insecure_channel(metrics.target) as channel:
                stub = metrics_pb2_grpc.MetricsStub(channel)

                def summary() -> metrics_pb2.RunSummary:
                    return stub.GetRunSummary(metrics_pb2.GetRunSummaryRequest(run_id=run_id), timeout=5)

                wait_for(lambda: summary().episodes >= status.episodes, 60, "metrics to see every episode")
                seen = summary()
        finally:
            codes = {proc.package: proc.stop() for proc in (orchestrator, metrics)}
    linked, sent = linked_traces(span_file)
    print()
    print("GAELP embedded run (foundation slice)")
    print(f"  run state            {status.state} {status.detail}")
    print(f"  episodes published   {status.episodes} ({status.env_steps} env steps, random policy)")
    print(f"  episodes at metrics  {seen.episodes}")
    for phase in seen.phases:
        print(f"  mean episode reward  {phase.mean_reward:.2f} over {phase.episodes} episodes")
    print(f"  traces linked        {linked}/{sent} consumer spans continue the producer's trace")
    print(f"  service exit codes   {codes}")
    print(f"  logs                 {log_dir}")
    ok = status.state == "completed" and seen.episodes == status.episodes and linked == sent
    ok = ok and all(code == 0 for code in codes.values())
    print("  result               " + ("OK" if ok else "FAILED"))
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gaelp.embedded", description=__doc__)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="YAML preset")
    parser.add_argument("--episodes", type=int, default=None)
    args = parser.parse_args(argv)
    settings = load_settings(args.config)
    log_dir = Path(settings.storage.data_dir) / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    episodes = args.episodes or settings.orchestrator.smoke_episodes
    return run_slice(settings, args.config.resolve(), episodes, log_dir)
