"""The sandbox server as a process of its own (streamable HTTP on loopback), for the embedded run,
tests and benchmarks; plus a blocking call of one of its tools."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from gaelp.bus.local_broker import free_port
from gaelp.sim.platform.mcp_client import McpConnectorConfig, McpPlatformConnector


class SandboxProcess:
    def __init__(self, log_dir: Path, seed: int = 0, transient_error_rate: float = 0.0,
                 report_delay_hours: int = 3, port: int | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_dir / "sandbox.log"
        self.arguments = ["--port", str(self.port), "--seed", str(seed),
                          "--transient-error-rate", str(transient_error_rate),
                          "--report-delay-hours", str(report_delay_hours)]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def start(self, wait_s: float = 30.0) -> SandboxProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            command = [sys.executable, "-m", "gaelp.sim.platform.sandbox", *self.arguments]
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + wait_s
        while not self._healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the sandbox did not start; see {self.log_path}")
            time.sleep(0.2)
        return self

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as answer:
                return bool(json.load(answer)["status"] == "ok")
        except OSError:
            return False

    def tool(self, name: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        """One tool call (sandbox_spend_log, sandbox_call_log, sandbox_advance_time, ...)."""

        async def call() -> dict[str, Any]:
            async with McpPlatformConnector(McpConnectorConfig(url=self.url, backoff_s=0.05)) as platform:
                return await platform.call(name, arguments or {})

        return asyncio.run(call())

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
