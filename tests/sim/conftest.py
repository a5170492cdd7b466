"""Shared fixtures: the OBD sample fetched once into the configured cache, a sandbox server process."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from gaelp.bus.local_broker import free_port
from gaelp.config.settings import load_settings
from gaelp.sim.historical.obd import fetch_obd


@pytest.fixture(scope="session")
def obd_root() -> Path:
    """Fetched the way `gaelp data fetch obd` does (pip download into storage.cache_dir), once."""
    return fetch_obd(load_settings().storage.cache_dir)


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    """A sandbox server in its own process, speaking MCP over streamable HTTP on loopback."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gaelp.sim.platform.sandbox", "--port", str(port),
         "--transient-error-rate", "0", "--report-delay-hours", "3", "--seed", "7"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    health = f"http://127.0.0.1:{port}/healthz"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(health, timeout=1) as response:
                assert json.load(response)["status"] == "ok"
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(
                    f"sandbox did not start: {process.stderr.read().decode()[-2000:]}"
                ) from None
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}/mcp"
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
