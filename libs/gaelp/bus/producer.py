"""Typed producer: protobuf values, string keys, trace context in headers, acks from settings."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata
from google.protobuf.message import Message
from opentelemetry import trace

from gaelp.bus.topics import Topic
from gaelp.bus.tracing import Headers, inject_context, publish_span, record_delivery
from gaelp.config.sections.infra import KafkaSettings

logger = logging.getLogger(__name__)


class BusProducer:
    def __init__(self, settings: KafkaSettings, *, client_id: str | None = None) -> None:
        if not settings.bootstrap:
            raise ValueError("kafka.bootstrap is empty: start a broker or set GAELP_KAFKA_BOOTSTRAP")
        self.settings = settings
        self._tracer = trace.get_tracer("gaelp.bus")
        self._producer = AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap,
            client_id=client_id or settings.client_id,
            acks=settings.acks_value,
            enable_idempotence=settings.enable_idempotence,
            linger_ms=settings.linger_ms,
            max_request_size=settings.max_request_size,
            request_timeout_ms=settings.request_timeout_ms,
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def __aenter__(self) -> BusProducer:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    async def send(
        self, topic: Topic[Any], key: str, value: Message, headers: Headers | None = None
    ) -> RecordMetadata:
        """Send and wait for the broker's acknowledgement (its partition and offset go on the span)."""
        with publish_span(self._tracer, topic.name, key, value) as span:
            carrier = inject_context(list(headers or []))
            delivery = await self._producer.send(
                topic.name, topic.encode(value), key=key.encode(), headers=carrier
            )
            metadata = await delivery
            record_delivery(span, metadata.partition, metadata.offset)
        return metadata

    async def enqueue(
        self, topic: Topic[Any], key: str, value: Message, headers: Headers | None = None
    ) -> asyncio.Future[RecordMetadata]:
        """Hand the message to the producer's batch and return its delivery future.

        For many messages in a row: enqueue them all, then await the futures together, so one
        broker round trip acknowledges a whole batch instead of one message each.
        """
        with publish_span(self._tracer, topic.name, key, value):
            carrier = inject_context(list(headers or []))
            return await self._producer.send(
                topic.name, topic.encode(value), key=key.encode(), headers=carrier
            )

    async def publish_in_background(
        self, topic: Topic[Any], key: str, value: Message, headers: Headers | None = None
    ) -> None:
        """Enqueue without waiting for the acknowledgement; a failed delivery is logged.

        Only for derived data that the next message supersedes (e.g. assessments)."""
        delivery = await self.enqueue(topic, key, value, headers)

        def _log_failure(future: asyncio.Future[RecordMetadata]) -> None:
            if not future.cancelled() and future.exception() is not None:
                logger.error("delivery to %s failed: %r", topic.name, future.exception())

        delivery.add_done_callback(_log_failure)

    async def send_raw(
        self, topic_name: str, key: bytes | None, value: bytes | None, headers: Headers
    ) -> RecordMetadata:
        """Bytes as they are (the DLQ and tests that need malformed input)."""
        return await self._producer.send_and_wait(topic_name, value, key=key, headers=headers)
