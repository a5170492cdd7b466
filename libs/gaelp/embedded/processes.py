"""Starting service processes (`python -m <service>`) and waiting on their gRPC health.

Used by the embedded main job and by tests that need real processes to signal and kill.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gaelp.bus.local_broker import free_port


def health_status(target: str, service: str = "", timeout_s: float = 1.0) -> str:
    """The grpc.health.v1 status name of `service` at target, or 'UNREACHABLE'."""
    with grpc.insecure_channel(target) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
            )
        except grpc.RpcError:
            return "UNREACHABLE"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


class ServiceProcess:
    """One service in its own process, with its own gRPC port, logs to a file."""

    def __init__(
        self,
        package: str,
        env: Mapping[str, str],
        log_dir: Path,
        port: int | None = None,
    ) -> None:
        self.package = package
        self.port = port or free_port()
        self.log_path = log_dir / f"{package}.log"
        self.env = {**os.environ, **env, "GAELP_GRPC_PORT": str(self.port)}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def launch(self) -> ServiceProcess:
        """Start the process without waiting for it to serve (wait_serving does)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.package], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def start(self, wait_s: float = 60.0) -> ServiceProcess:
        self.launch().wait_serving(wait_s)
        return self

    def wait_serving(self, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.package} exited with {self.process.returncode}; log tail:\n{self.log_tail()}"
                )
            if health_status(self.target) == "SERVING":
                return
            time.sleep(0.2)
        raise TimeoutError(f"{self.package} not SERVING after {wait_s}s; log tail:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not exit in time. Returns the exit code."""
        if self.process is None:
            return None
        self.signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def start_together(*services: ServiceProcess, wait_s: float = 60.0) -> None:
    """Launch every service, then wait for each to serve: their imports and group joins overlap.

    Only for services that need none of the others serving to start (each knows the others' ports
    from the start; their calls to one another come later, with deadlines and retries)."""
    for service in services:
        service.launch()
    for service in services:
        service.wait_serving(wait_s)
