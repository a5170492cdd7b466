"""Publishing to Google Cloud Pub/Sub: message ordering per run, bounded retries with backoff.

The google-cloud-pubsub PublisherClient batches in its own threads; its futures are awaited here on
the event loop. With message ordering a failed publish pauses its ordering key, and every later
message of that key fails too, so a retry resumes the key and republishes the failed messages in
their original order.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import grpc
from google.api_core import exceptions as google_exceptions
from google.api_core.retry import Retry
from google.cloud import pubsub_v1
from google.pubsub_v1.services.publisher.transports.grpc import PublisherGrpcTransport

from gaelp.config.sections.pubsub import PubSubSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PubSubMessage:
    """One message for one topic id (short name); ordering key = run id."""

    topic: str
    data: bytes
    ordering_key: str
    attributes: dict[str, str] = field(default_factory=dict)


class PublishFailed(RuntimeError):
    """A message could not be published within the configured attempts."""


class PubSubPublisher:
    def __init__(self, settings: PubSubSettings) -> None:
        self.settings = settings
        options = pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
        if settings.emulator_host:
            # The emulator speaks plaintext gRPC and wants no credentials.
            transport = PublisherGrpcTransport(channel=grpc.insecure_channel(settings.emulator_host))
            self._client = pubsub_v1.PublisherClient(publisher_options=options, transport=transport)
        else:
            self._client = pubsub_v1.PublisherClient(publisher_options=options)
        self._retry = Retry(initial=0.1, maximum=2.0, multiplier=2.0, timeout=settings.attempt_timeout_s)

    def topic_path(self, topic: str) -> str:
        return self._client.topic_path(self.settings.project_id, topic)

    async def ensure_topics(self, topics: list[str]) -> None:
        """Create the topics that do not exist yet (the emulator starts with none)."""
        for topic in topics:
            path = self.topic_path(topic)
            try:
                await asyncio.to_thread(self._client.create_topic, name=path,
                                        timeout=self.settings.attempt_timeout_s)
                logger.info("created Pub/Sub topic", extra={"topic": path})
            except google_exceptions.AlreadyExists:
                pass

    async def publish(self, messages: list[PubSubMessage]) -> list[tuple[PubSubMessage, BaseException]]:
        """Publish all; return the messages still failing after max_attempts, with their last error."""
        pending = list(messages)
        backoff = self.settings.initial_backoff_s
        for attempt in range(1, self.settings.max_attempts + 1):
            errors = await self._attempt(pending)
            failed = [(message, error) for message, error in zip(pending, errors, strict=True)
                      if error is not None]
            for topic, key in {(message.topic, message.ordering_key) for message, _ in failed}:
                self._client.resume_publish(self.topic_path(topic), key)
            if not failed:
                return []
            if attempt == self.settings.max_attempts:
                return [(message, PublishFailed(
                    f"pubsub topic {message.topic}: not published after {attempt} attempts: {error!r}"))
                    for message, error in failed]
            logger.warning("Pub/Sub publish failed; retrying",
                           extra={"failed": len(failed), "attempt": attempt, "error": repr(failed[0][1])})
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.settings.max_backoff_s)
            pending = [message for message, _ in failed]
        raise AssertionError("unreachable: the last attempt returns")

    async def _attempt(self, messages: list[PubSubMessage]) -> list[BaseException | None]:
        futures: list[asyncio.Future[str] | BaseException] = []
        for message in messages:
            try:
                future = self._client.publish(
                    self.topic_path(message.topic), message.data, ordering_key=message.ordering_key,
                    retry=self._retry, timeout=self.settings.attempt_timeout_s, **message.attributes,
                )
                futures.append(asyncio.wrap_future(future))
            except Exception as error:  # a paused ordering key refuses at once
                futures.append(error)
        results: list[BaseException | None] = []
        for item in futures:
            if isinstance(item, BaseException):
                results.append(item)
                continue
            try:
                await item
                results.append(None)
            except Exception as error:
                results.append(error)
        return results

    def stop(self) -> None:
        """Send what is batched and wait for it (blocking: call in a thread)."""
        self._client.stop()
