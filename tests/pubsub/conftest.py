"""The real Pub/Sub emulator (Google Cloud CLI) on a free loopback port, and the metrics service with
Pub/Sub on against it as a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gaelp.bus.local_broker import free_port
from gaelp.embedded.pubsub_emulator import PubSubEmulator, missing_reason

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def pubsub_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """host:port of a fresh emulator; PUBSUB_EMULATOR_HOST points the test's own clients at it."""
    reason = missing_reason()
    if reason is not None:
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    before = os.environ.get("PUBSUB_EMULATOR_HOST")
    with PubSubEmulator(tmp_path_factory.mktemp("pubsub-emulator") / "emulator.log") as emulator:
        os.environ["PUBSUB_EMULATOR_HOST"] = emulator.host
        try:
            yield emulator.host
        finally:
            if before is None:
                os.environ.pop("PUBSUB_EMULATOR_HOST", None)
            else:
                os.environ["PUBSUB_EMULATOR_HOST"] = before


@dataclass
class PublishingService:
    """`python -m metrics` with Pub/Sub on, started from one YAML preset."""

    config_path: Path
    log_file: Path
    grpc_port: int
    process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 120.0) -> None:
        env = {key: value for key, value in os.environ.items()
               if not key.startswith("GAELP_") and key != "PUBSUB_EMULATOR_HOST"}
        env["GAELP_CONFIG"] = str(self.config_path)
        self.process = subprocess.Popen([sys.executable, "-m", "metrics"], cwd=REPO_ROOT, env=env,
                                        stdout=self.log_file.open("ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        with grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"metrics exited with {self.process.returncode}:\n{self.log()}")
                try:
                    response = health.Check(health_pb2.HealthCheckRequest(service="gaelp.v1.Metrics"),
                                            timeout=1)
                    if response.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.3)
        self.kill()
        raise TimeoutError(f"metrics not SERVING after {timeout_s}s:\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL: no drain, no commit (what a crash leaves behind)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self, timeout_s: float = 60.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")


@pytest.fixture
def publishing_service(kafka_bootstrap: str, pubsub_emulator: str, tmp_path: Path,
                       unique_name: str) -> Iterator[tuple[PublishingService, dict[str, Any]]]:
    """An unstarted metrics service publishing to the emulator, and its Pub/Sub settings."""
    grpc_port = free_port()
    pubsub = {
        "enabled": True,
        "project_id": f"p-{unique_name}",
        "emulator_host": pubsub_emulator,
        "group_id": f"operator-events-{unique_name}",
        "assessment_changes_only": False,
    }
    config = {
        "kafka": {"bootstrap": kafka_bootstrap, "enable_idempotence": False, "acks": "1"},
        "grpc": {"port": grpc_port, "grace_period_s": 15},
        "storage": {"data_dir": str(tmp_path / "data")},
        "metrics": {"group_id": f"metrics-{unique_name}", "http_port": 0, "commit_interval_s": 0.5},
        "pubsub": pubsub,
    }
    config_path = tmp_path / "metrics.yaml"
    config_path.write_text(yaml.safe_dump(config))
    service = PublishingService(config_path, tmp_path / "metrics.log", grpc_port)
    yield service, pubsub
    service.kill()
