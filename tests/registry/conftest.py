"""Fixtures of the registry tests: both database dialects, a registry process, the sandbox process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

# registry_support lives next to the tests; importlib import mode does not put this folder on sys.path
sys.path.insert(0, str(Path(__file__).parent))
from registry_support import OPERATOR_TOKEN

from gaelp.bus.local_broker import free_port
from gaelp.db import Database
from gaelp.db.registry import RegistryStore
from gaelp.service.auth import token_hash
from gaelp.v1 import registry_pb2_grpc

REPO_ROOT = Path(__file__).resolve().parents[2]
SPECS_DIR = REPO_ROOT / "configs" / "environments"
RegistryStub = registry_pb2_grpc.EnvironmentRegistryStub


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs once on SQLite and once on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[RegistryStore]:
    db = await Database.connect(database_url)
    try:
        yield await RegistryStore.open(db)
    finally:
        await db.close()


def _stop(process: subprocess.Popen[bytes], timeout_s: float = 15.0) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return int(process.returncode)


@dataclass
class RegistryProcess:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        return _stop(self.process)


def wait_serving(
    target: str, process: subprocess.Popen[bytes], log_path: Path, timeout_s: float = 30.0
) -> None:
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"registry exited with {process.returncode}:\n{log_path.read_text()}")
            try:
                answer = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise AssertionError(f"registry did not serve within {timeout_s} s:\n{log_path.read_text()}")


StartRegistry = Callable[..., RegistryProcess]


@pytest.fixture
def start_registry(tmp_path: Path) -> Iterator[StartRegistry]:
    """start_registry(database_url, specs_dir=..., **env) -> a serving registry process."""
    started: list[RegistryProcess] = []

    def start(database_url: str, specs_dir: Path | str = "", **settings: str) -> RegistryProcess:
        port = free_port()
        log_path = tmp_path / f"registry-{len(started)}.log"
        env = {
            **os.environ,
            "GAELP_GRPC_PORT": str(port),
            "GAELP_GRPC_GRACE_PERIOD_S": "5",
            "GAELP_DATABASE_URL": database_url,
            "GAELP_ENVIRONMENT_REGISTRY_SPECS_DIR": str(specs_dir),
            "GAELP_ENVIRONMENT_REGISTRY_HEALTH_INTERVAL_S": "0.25",
            "GAELP_ENVIRONMENT_REGISTRY_HEALTH_TIMEOUT_S": "2",
            "GAELP_ENVIRONMENT_REGISTRY_OPERATORS": json.dumps({"tests": token_hash(OPERATOR_TOKEN)}),
            **{f"GAELP_{name.upper()}": value for name, value in settings.items()},
        }
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "environment_registry"],
                env=env,
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        registry = RegistryProcess(process, port, log_path)
        started.append(registry)
        wait_serving(registry.target, process, log_path)
        return registry

    yield start
    for registry in started:
        registry.stop()


@pytest.fixture
async def registry_stub_for() -> AsyncIterator[Callable[[RegistryProcess], RegistryStub]]:
    channels: list[grpc.aio.Channel] = []

    def stub_for(registry: RegistryProcess) -> RegistryStub:
        channel = grpc.aio.insecure_channel(registry.target)
        channels.append(channel)
        return registry_pb2_grpc.EnvironmentRegistryStub(channel)

    yield stub_for
    for channel in channels:
        await channel.close()


@dataclass
class SandboxProcess:
    """The platform sandbox (a real MCP server over streamable HTTP) in its own process, which a
    test can stop and start again on the same port."""

    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gaelp.sim.platform.sandbox", "--port", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 90  # generous: the sandbox imports slowly on a busy machine
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"sandbox exited:\n{self.log_path.read_text()}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise AssertionError(f"sandbox did not listen:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxProcess]:
    server = SandboxProcess(free_port(), tmp_path / "sandbox.log")
    yield server
    server.stop()
