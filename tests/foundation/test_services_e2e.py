"""Two service processes over the real broker: an event crosses, traces link, SIGTERM drains."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gaelp.bus import EPISODES, BusProducer
from gaelp.bus.local_broker import free_port
from gaelp.bus.reader import read_topic
from gaelp.config import load_settings
from gaelp.embedded.processes import ServiceProcess
from gaelp.v1 import (
    common_pb2,
    events_pb2,
    metrics_pb2,
    metrics_pb2_grpc,
    orchestrator_pb2,
    orchestrator_pb2_grpc,
)

GRACE_S = 10.0


def service_env(bootstrap: str, tmp_path: Path, name: str, group: str) -> dict[str, str]:
    return {
        "GAELP_KAFKA_BOOTSTRAP": bootstrap,
        "GAELP_KAFKA_ENABLE_IDEMPOTENCE": "false",
        "GAELP_KAFKA_ACKS": "1",
        "GAELP_GRPC_GRACE_PERIOD_S": str(GRACE_S),
        "GAELP_TELEMETRY_SPAN_FILE": str(tmp_path / f"{name}-spans.jsonl"),
        "GAELP_STORAGE_DATA_DIR": str(tmp_path / name),
        "GAELP_STORAGE_CHECKPOINT_DIR": str(tmp_path / name / "checkpoints"),
        "GAELP_DATABASE_URL": f"sqlite:///{tmp_path / name / 'db.sqlite'}",
        "GAELP_METRICS_GROUP_ID": group,
        "GAELP_METRICS_HTTP_PORT": str(free_port()),
    }


@pytest.fixture
def metrics_service(kafka_bootstrap: str, tmp_path: Path, unique_name: str) -> Iterator[ServiceProcess]:
    service = ServiceProcess(
        "metrics", service_env(kafka_bootstrap, tmp_path, "metrics", f"metrics-{unique_name}"), tmp_path
    ).start(wait_s=90)
    yield service
    service.stop()


def run_summary(target: str, run_id: str) -> metrics_pb2.RunSummary:
    with grpc.insecure_channel(target) as channel:
        return metrics_pb2_grpc.MetricsStub(channel).GetRunSummary(
            metrics_pb2.GetRunSummaryRequest(run_id=run_id), timeout=5
        )


def wait_for_episodes(target: str, run_id: str, expected: int, timeout_s: float = 60) -> int:
    deadline = time.monotonic() + timeout_s
    seen = 0
    while time.monotonic() < deadline:
        seen = run_summary(target, run_id).episodes
        if seen >= expected:
            return seen
        time.sleep(0.25)
    return seen


def read_spans(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_episodes_cross_processes_and_consumer_spans_continue_the_producer_trace(
    kafka_bootstrap: str, tmp_path: Path, unique_name: str, metrics_service: ServiceProcess
) -> None:
    env = service_env(kafka_bootstrap, tmp_path, "orchestrator", "unused")
    env["GAELP_ORCHESTRATOR_LEARNER_TARGET"] = ""  # a smoke run needs no learner
    orchestrator = ServiceProcess("orchestrator", env, tmp_path).start(wait_s=90)
    try:
        with grpc.insecure_channel(orchestrator.target) as channel:
            control = orchestrator_pb2_grpc.OrchestratorStub(channel)
            control.StartRun(orchestrator_pb2.StartRunRequest(
                run_id=unique_name, config_json=json.dumps({"kind": "smoke", "episodes": 8}),
            ), timeout=10)
            deadline = time.monotonic() + 60
            status = None
            while time.monotonic() < deadline:
                status = control.GetRunStatus(orchestrator_pb2.RunIdRequest(run_id=unique_name), timeout=5)
                if status.state in {"completed", "failed"}:
                    break
                time.sleep(0.25)
        assert status is not None and status.state == "completed", status
        assert wait_for_episodes(metrics_service.target, unique_name, status.episodes) == status.episodes
    finally:
        assert orchestrator.stop() == 0
    assert metrics_service.stop() == 0  # flushes the consumer's spans

    sends = {s["span_id"]: s for s in read_spans(tmp_path / "orchestrator-spans.jsonl")
             if s["name"] == "publish gaelp.episodes.v1"}
    processed = [s for s in read_spans(tmp_path / "metrics-spans.jsonl")
                 if s["name"] == "process gaelp.episodes.v1" and s["parent_span_id"] in sends]
    assert len(processed) == status.episodes
    for span in processed:
        producer_span = sends[span["parent_span_id"]]
        assert span["trace_id"] == producer_span["trace_id"]
        assert span["service"] == "metrics" and producer_span["service"] == "orchestrator"
        assert span["kind"] == "CONSUMER" and producer_span["kind"] == "PRODUCER"


def _watch_health(target: str, statuses: list[str], ready: threading.Event) -> None:
    """Record every status the grpc.health.v1 Watch stream reports until the server goes away."""
    with grpc.insecure_channel(target) as channel:
        stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
        try:
            for response in stream:
                statuses.append(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))
                ready.set()
        except grpc.RpcError:
            return


async def _produce_steadily(bootstrap: str, run_id: str, stop: threading.Event, sent: list[int]) -> None:
    settings = load_settings(kafka={"bootstrap": bootstrap, "enable_idempotence": False, "acks": "1"})
    async with BusProducer(settings.kafka) as producer:
        index = 0
        while not stop.is_set():
            await producer.send(EPISODES, run_id, events_pb2.EpisodeSummary(
                run_id=run_id, episode_id=f"{run_id}-{index}", phase=common_pb2.PHASE_SIMULATION,
                task="load", roas=2.0, spend=1.0, revenue=2.0, budget=2.0,
            ))
            index += 1
            sent.append(index)
            await asyncio.sleep(0.005)


async def _committed_messages_of_run(bootstrap: str, group: str, run_id: str) -> int:
    """How many of the run's episodes lie below the group's committed offsets."""
    records = [r for r in await read_topic(bootstrap, EPISODES.name) if r.key == run_id.encode()]
    member = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await member.start()
    try:
        partitions = {TopicPartition(r.topic, r.partition) for r in records}
        committed = {tp: await member.committed(tp) or 0 for tp in partitions}
    finally:
        await member.stop()
    return sum(1 for r in records if r.offset < committed[TopicPartition(r.topic, r.partition)])


def test_sigterm_under_load_goes_not_serving_commits_and_exits_in_grace(
    kafka_bootstrap: str, metrics_service: ServiceProcess, unique_name: str
) -> None:
    statuses: list[str] = []
    watching = threading.Event()
    watcher = threading.Thread(target=_watch_health, args=(metrics_service.target, statuses, watching))
    watcher.start()
    assert watching.wait(10) and statuses[0] == "SERVING"

    stop_load, sent = threading.Event(), []
    load = threading.Thread(target=lambda: asyncio.run(
        _produce_steadily(kafka_bootstrap, unique_name, stop_load, sent)))
    load.start()
    try:
        assert wait_for_episodes(metrics_service.target, unique_name, 50) >= 50  # consuming under load
        seen_before_stop = run_summary(metrics_service.target, unique_name).episodes
        started = time.monotonic()
        metrics_service.signal(signal.SIGTERM)  # the load keeps coming
        assert metrics_service.process is not None
        code = metrics_service.process.wait(timeout=GRACE_S + 5)
        elapsed = time.monotonic() - started
    finally:
        stop_load.set()
        load.join()
        watcher.join(timeout=10)
    assert code == 0
    assert elapsed < GRACE_S, f"took {elapsed:.1f}s, grace is {GRACE_S}s"
    assert statuses[-1] == "NOT_SERVING", statuses
    # Everything processed before the stop was committed by the drain (periodic commits lag behind).
    group = f"metrics-{unique_name}"
    committed = asyncio.run(_committed_messages_of_run(kafka_bootstrap, group, unique_name))
    assert committed >= seen_before_stop, (committed, seen_before_stop)
    assert len(sent) > committed  # the stop happened under load, not after it
