"""The Google Cloud Pub/Sub emulator on a loopback port, for `make demo ARGS=--pubsub` and the tests.

It ships with the Google Cloud CLI (Debian package google-cloud-cli-pubsub-emulator, or
`gcloud components install pubsub-emulator`) and needs Java. The launcher is a shell script around
java, so the process group it leads is what gets stopped.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from gaelp.bus.local_broker import free_port

LAUNCHER = "cloud-pubsub-emulator"
SDK_ROOTS = (Path("/usr/lib/google-cloud-sdk"), Path("/usr/share/google-cloud-sdk"),
             Path("/opt/google-cloud-sdk"))


def find_emulator() -> Path | None:
    """The emulator launcher: on PATH, or in the SDK's platform/pubsub-emulator/bin."""
    on_path = shutil.which(LAUNCHER)
    if on_path:
        return Path(on_path)
    gcloud = shutil.which("gcloud")
    roots = [Path(gcloud).resolve().parents[1]] if gcloud else []
    for root in [*roots, *SDK_ROOTS]:
        candidate = root / "platform" / "pubsub-emulator" / "bin" / LAUNCHER
        if candidate.is_file():
            return candidate
    return None


def missing_reason() -> str | None:
    """Why the emulator cannot start here, or None when it can."""
    if find_emulator() is None:
        return (f"{LAUNCHER} not found (Debian package google-cloud-cli-pubsub-emulator, "
                "or `gcloud components install pubsub-emulator`)")
    if shutil.which("java") is None:
        return "the Pub/Sub emulator needs Java, and there is none on PATH"
    return None


class PubSubEmulator:
    """A fresh emulator (it keeps everything in memory) listening on 127.0.0.1:<free port>."""

    def __init__(self, log_path: Path, start_timeout_s: float = 120.0) -> None:
        self.log_path = log_path
        self.start_timeout_s = start_timeout_s
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PubSubEmulator:
        reason = missing_reason()
        if reason is not None:
            raise RuntimeError(reason)
        launcher = find_emulator()
        assert launcher is not None
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen([str(launcher), "--host=127.0.0.1", f"--port={self.port}"],
                                        stdout=self.log_path.open("wb"), stderr=subprocess.STDOUT,
                                        start_new_session=True)
        try:
            self._wait_listening()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def _wait_listening(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Pub/Sub emulator exited with {self.process.returncode}:\n"
                                   f"{self.log_path.read_text(errors='replace')}")
            with socket.socket() as probe:
                probe.settimeout(1)
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.3)
        raise TimeoutError(f"Pub/Sub emulator not listening after {self.start_timeout_s}s:\n"
                           f"{self.log_path.read_text(errors='replace')}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def ordered_subscriptions(subscriber: Any, project: str, topics: dict[str, str],
                          prefix: str) -> dict[str, str]:
    """Per kind, an ordered pull subscription `<prefix>-<kind>` on its topic (both created when
    missing: the emulator starts empty); the subscription paths."""
    from google.api_core import exceptions
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    paths: dict[str, str] = {}
    for kind, topic in topics.items():
        topic_path = publisher.topic_path(project, topic)
        try:
            publisher.create_topic(name=topic_path, timeout=30)
        except exceptions.AlreadyExists:
            pass
        path = subscriber.subscription_path(project, f"{prefix}-{kind}")
        try:
            subscriber.create_subscription(
                request={"name": path, "topic": topic_path, "enable_message_ordering": True}, timeout=30)
        except exceptions.AlreadyExists:
            pass
        paths[kind] = path
    return paths


class OperatorEventTap:
    """Pull subscriptions on the operator-event topics, created before anything is published, so
    the demo can say what reached Pub/Sub. Needs PUBSUB_EMULATOR_HOST set for the clients."""

    def __init__(self, project: str, topics: dict[str, str]) -> None:
        from google.cloud import pubsub_v1

        self.subscriber = pubsub_v1.SubscriberClient()
        self.paths = ordered_subscriptions(self.subscriber, project, topics, "gaelp-demo")

    def drain(self, quiet_rounds: int = 2) -> dict[str, dict[str, int]]:
        """Pull and ack until `quiet_rounds` rounds bring nothing: per kind, messages per event type."""
        counts: dict[str, dict[str, int]] = {kind: {} for kind in self.paths}
        seen: set[str] = set()
        quiet = 0
        while quiet < quiet_rounds:
            pulled = 0
            for kind, path in self.paths.items():
                response = self.subscriber.pull(request={"subscription": path, "max_messages": 500,
                                                         "return_immediately": True}, timeout=30)
                if not response.received_messages:
                    continue
                for received in response.received_messages:
                    attributes = received.message.attributes
                    event_id = attributes.get("event_id", received.message.message_id)
                    if event_id in seen:
                        continue  # a redelivery: the event id de-duplicates it
                    seen.add(event_id)
                    event_type = attributes.get("event_type", kind)
                    counts[kind][event_type] = counts[kind].get(event_type, 0) + 1
                pulled += len(response.received_messages)
                self.subscriber.acknowledge(request={"subscription": path, "ack_ids": [
                    received.ack_id for received in response.received_messages]}, timeout=30)
            quiet = quiet + 1 if pulled == 0 else 0
            time.sleep(0.5)
        return counts

    def close(self) -> None:
        self.subscriber.close()
