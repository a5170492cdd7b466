"""The metrics service as a real process against the test broker, and helpers to feed and read it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gaelp.bus import ASSESSMENTS
from gaelp.bus.local_broker import LocalBroker, free_port
from gaelp.config import GaelpSettings, load_settings
from gaelp.v1 import events_pb2, metrics_pb2_grpc

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class MetricsProcess:
    process: subprocess.Popen[bytes]
    grpc_port: int
    http_port: int
    span_file: Path
    log_file: Path
    settings: GaelpSettings

    def stub(self) -> metrics_pb2_grpc.MetricsStub:
        return metrics_pb2_grpc.MetricsStub(grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}"))

    def stop(self, timeout_s: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def assessment_spans(self) -> set[str]:
        """Span ids of the assessments this process published (complete once it stopped): other
        services on the broker assess the same episodes, the traceparent header tells them apart."""
        spans = [json.loads(line) for line in self.span_file.read_text().splitlines()]
        name = f"publish {ASSESSMENTS.name}"
        return {s["span_id"] for s in spans if s["kind"] == "PRODUCER" and s["name"] == name}


def start_metrics(bootstrap: str, work_dir: Path, group_id: str, kafka: dict[str, Any] | None = None,
                  **metrics: Any) -> MetricsProcess:
    """Start `python -m metrics` with a YAML preset and env vars; return once health says SERVING.

    kafka: settings of the kafka section on top of the test broker's."""
    work_dir.mkdir(parents=True, exist_ok=True)
    grpc_port, http_port = free_port(), free_port()
    span_file = work_dir / "metrics-spans.jsonl"
    config = {
        "kafka": {"bootstrap": bootstrap, "enable_idempotence": False, "acks": "1", **(kafka or {})},
        "grpc": {"port": grpc_port, "grace_period_s": 15},
        "telemetry": {"span_file": str(span_file)},
        "storage": {"data_dir": str(work_dir / "data")},
        "metrics": {"group_id": group_id, "http_port": http_port, "commit_interval_s": 0.5, **metrics},
    }
    config_path = work_dir / "metrics.yaml"
    config_path.write_text(yaml.safe_dump(config))
    env = {key: value for key, value in os.environ.items() if not key.startswith("GAELP_")}
    env["GAELP_CONFIG"] = str(config_path)
    log_file = work_dir / "metrics.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "metrics"], cwd=REPO_ROOT, env=env,
        stdout=log_file.open("ab"), stderr=subprocess.STDOUT,
    )
    service = MetricsProcess(process, grpc_port, http_port, span_file, log_file, load_settings(config_path))
    _wait_serving(service, timeout_s=90)
    return service


def _wait_serving(service: MetricsProcess, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if service.process.poll() is not None:
                raise RuntimeError(f"metrics exited with {service.process.returncode}:\n{service.log()}")
            try:
                response = health.Check(health_pb2.HealthCheckRequest(service="gaelp.v1.Metrics"), timeout=1)
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.3)
    service.stop()
    raise TimeoutError(f"metrics not SERVING after {timeout_s}s:\n{service.log()}")


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The metrics tests' own broker: the shared service they start reads its topics from the
    beginning, and the episodes earlier folders left on the session's broker are not theirs."""
    with LocalBroker(log_path=tmp_path_factory.mktemp("metrics-broker") / "tansu.log") as broker:
        yield broker.bootstrap


@pytest.fixture(scope="session")
def metrics_service(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MetricsProcess]:
    """One service process shared by the metrics tests (each test uses its own run ids)."""
    work_dir = tmp_path_factory.mktemp("metrics")
    # Short batch waits: the graduation test steps through its episodes one batch at a time.
    service = start_metrics(kafka_bootstrap, work_dir, f"metrics-{work_dir.name}", batch_within_s=0.05)
    yield service
    assert service.stop() == 0, service.log()


class AssessmentFeed:
    """The assessments published for one run, read from the start of the topic as they come."""

    def __init__(self, bootstrap: str, run_id: str, published_by: set[str] | None = None) -> None:
        self.run_id = run_id
        self.published_by = published_by  # only these publish spans (MetricsProcess.assessment_spans)
        self.read: list[events_pb2.GraduationAssessment] = []
        # Tansu answers a fetch at the end of its wait even when a record landed meanwhile.
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                          fetch_max_wait_ms=50)

    async def __aenter__(self) -> AssessmentFeed:
        await self._consumer.start()
        await self._consumer.topics()  # loads the metadata partitions_for_topic reads
        partitions = [TopicPartition(ASSESSMENTS.name, p)
                      for p in sorted(self._consumer.partitions_for_topic(ASSESSMENTS.name) or {0})]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._consumer.stop()

    async def poll(self, timeout_ms: int = 500) -> list[events_pb2.GraduationAssessment]:
        """What arrived for the run within timeout_ms (also kept in self.read)."""
        found = []
        for records in (await self._consumer.getmany(timeout_ms=timeout_ms)).values():
            found += [ASSESSMENTS.decode(r.value) for r in records
                      if r.key == self.run_id.encode() and self._published_by_us(r.headers)]
        self.read += found
        return found

    def _published_by_us(self, headers: Any) -> bool:
        if self.published_by is None:
            return True
        parents = [value.decode().split("-")[2] for key, value in headers if key == "traceparent"]
        return bool(parents) and parents[0] in self.published_by

    async def until(self, done: Callable[[list[events_pb2.GraduationAssessment]], bool],
                    timeout_s: float = 60.0) -> list[events_pb2.GraduationAssessment]:
        """Read until done(everything read so far) holds or timeout_s passes; return everything read."""
        deadline = time.monotonic() + timeout_s
        while not done(self.read) and time.monotonic() < deadline:
            await self.poll()
        return self.read


@pytest.fixture
def assessment_feed(kafka_bootstrap: str) -> Callable[..., AssessmentFeed]:
    """assessment_feed(run_id[, published_by]): `async with` it, then poll()/until() the run's assessments."""
    return lambda run_id, published_by=None: AssessmentFeed(kafka_bootstrap, run_id, published_by)


@pytest.fixture
def metrics_launcher(kafka_bootstrap: str) -> Iterator[Callable[..., MetricsProcess]]:
    """launch(work_dir, group_id[, kafka], **metrics_settings) starts a service; all stop at the end."""
    started: list[MetricsProcess] = []

    def launch(work_dir: Path, group_id: str, kafka: dict[str, Any] | None = None, **metrics: Any
               ) -> MetricsProcess:
        service = start_metrics(kafka_bootstrap, work_dir, group_id, kafka, **metrics)
        started.append(service)
        return service

    yield launch
    for service in started:
        if service.process.poll() is None:
            service.stop()
