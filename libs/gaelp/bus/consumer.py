"""Typed consumer: getmany batches, protobuf decode, a process span per message, DLQ, manual commits.

Offsets are committed only after the messages before them were processed (or dead-lettered), so a
crash redelivers at most the batch in flight and never skips one. A message that cannot be decoded
or validated (gaelp.bus.validation, before any handler sees it), or whose handler raises, goes to the
DLQ once with its origin, and the consumer goes on with the rest of the poll. With
commit_after_batch=False the owner commits itself (commit_offsets): the learner commits only the
offsets its checkpoint holds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata
from google.protobuf.message import Message
from opentelemetry import trace

from gaelp.bus.dlq import DeadLetterQueue
from gaelp.bus.producer import BusProducer
from gaelp.bus.topics import Topic
from gaelp.bus.tracing import process_span
from gaelp.bus.validation import validate
from gaelp.config.sections.infra import KafkaSettings

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)


@dataclass(frozen=True)
class Delivery(Generic[M]):
    """One decoded message and where it came from."""

    record: ConsumerRecord
    value: M

    @property
    def topic(self) -> str:
        return self.record.topic

    @property
    def key(self) -> str:
        return self.record.key.decode(errors="replace") if self.record.key else ""

    @property
    def headers(self) -> Sequence[tuple[str, bytes]]:
        return self.record.headers or ()


class _CommitOnRevoke(ConsumerRebalanceListener):
    def __init__(self, consumer: BusConsumer) -> None:
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: Any) -> None:
        if self._consumer.commit_after_batch:
            await self._consumer.commit()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        if self._consumer.on_assigned is not None:
            await self._consumer.on_assigned(set(assigned))


class BusConsumer:
    def __init__(
        self,
        settings: KafkaSettings,
        topics: Sequence[Topic[Any]],
        group_id: str,
        dlq_producer: BusProducer,
        *,
        client_id: str | None = None,
        auto_offset_reset: str = "earliest",
        on_assigned: Callable[[set[TopicPartition]], Awaitable[None]] | None = None,
        commit_after_batch: bool = True,
    ) -> None:
        if not settings.bootstrap:
            raise ValueError("kafka.bootstrap is empty: start a broker or set GAELP_KAFKA_BOOTSTRAP")
        self.settings = settings
        self.group_id = group_id
        self.topics = {topic.name: topic for topic in topics}
        self.dlq = DeadLetterQueue(dlq_producer, settings.dlq_topic, group_id)
        self.on_assigned = on_assigned
        self.commit_after_batch = commit_after_batch
        self._tracer = trace.get_tracer("gaelp.bus")
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.bootstrap,
            group_id=group_id,
            client_id=client_id or settings.client_id,
            enable_auto_commit=False,
            auto_offset_reset=auto_offset_reset,
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=settings.heartbeat_interval_ms,
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
            request_timeout_ms=max(settings.request_timeout_ms, settings.session_timeout_ms + 5000),
        )
        self._processed: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._settled: set[tuple[str, int, int]] = set()  # messages of the poll in flight that are done
        self._stopping = asyncio.Event()
        self.dead_lettered = 0

    async def start(self) -> None:
        await self._consumer.start()
        self._consumer.subscribe(list(self.topics), listener=_CommitOnRevoke(self))

    async def stop(self) -> None:
        """Commit what was processed (unless the owner commits) and leave the group."""
        if self.commit_after_batch:
            await self.commit()
        await self._consumer.stop()

    def stop_soon(self) -> None:
        """Ask run()/run_batches() to return after the batch in flight (used when draining)."""
        self._stopping.set()

    async def finish(self, run_task: asyncio.Task[Any], timeout_s: float) -> None:
        """Drain: let run()/run_batches() finish the batch in flight, at most timeout_s.

        A consumer caught in a rebalance waits in getmany for its assignment with no time limit;
        it holds no records then, so cancelling it loses nothing (uncommitted offsets are re-read).
        """
        self.stop_soon()
        done, _ = await asyncio.wait({run_task}, timeout=timeout_s)
        if not done:
            logger.warning("consumer still waiting after %.1fs; cancelling it", timeout_s)
            run_task.cancel()
            await asyncio.gather(run_task, return_exceptions=True)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def poll(self, timeout_ms: int | None = None) -> list[Delivery[Any]]:
        """One getmany round, decoded and validated; the records that fail are dead-lettered alone."""
        batches = await self._consumer.getmany(
            timeout_ms=timeout_ms if timeout_ms is not None else self.settings.consumer_poll_timeout_ms,
            max_records=self.settings.consumer_max_records,
        )
        deliveries: list[Delivery[Any]] = []
        for records in batches.values():
            for record in records:
                try:
                    value = self.topics[record.topic].decode(record.value)
                    validate(record.topic, value)
                except Exception as error:
                    with process_span(self._tracer, record.topic, record.partition, record.offset,
                                      record.headers or (), consumer_group=self.group_id,
                                      key=record.key) as span:
                        span.record_exception(error)
                        await self.dead_letter(record, error)
                    continue
                deliveries.append(Delivery(record, value))
        return deliveries

    @staticmethod
    def _key(record: ConsumerRecord) -> tuple[str, int, int]:
        return record.topic, record.partition, record.offset

    def mark_processed(self, record: ConsumerRecord) -> None:
        self._settled.add(self._key(record))
        partition = TopicPartition(record.topic, record.partition)
        self._processed[partition] = max(self._processed.get(partition, 0), record.offset + 1)

    async def dead_letter(self, record: ConsumerRecord, error: BaseException) -> None:
        await self.dlq.send(record, error)
        self.dead_lettered += 1
        self.mark_processed(record)

    async def commit(self) -> None:
        """Commit the offset after the last processed message of every partition still owned."""
        owned = self._consumer.assignment()
        pending = {
            tp: OffsetAndMetadata(offset, "")
            for tp, offset in self._processed.items()
            if tp in owned and self._committed.get(tp) != offset
        }
        if not pending:
            return
        await self._consumer.commit(pending)
        self._committed.update({tp: meta.offset for tp, meta in pending.items()})

    async def commit_offsets(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit exactly these next offsets for the partitions still owned."""
        owned = self._consumer.assignment()
        pending = {tp: OffsetAndMetadata(offset, "") for tp, offset in offsets.items() if tp in owned}
        if pending:
            await self._consumer.commit(pending)
            self._committed.update({tp: meta.offset for tp, meta in pending.items()})

    def processed_offsets(self) -> dict[TopicPartition, int]:
        """Next offset to read per partition, for checkpoints that must resume exactly here."""
        return dict(self._processed)

    def seek(self, offsets: dict[TopicPartition, int]) -> None:
        """Position owned partitions at the given next offsets (restoring from a checkpoint)."""
        owned = self._consumer.assignment()
        for tp, offset in offsets.items():
            if tp in owned:
                self._consumer.seek(tp, offset)
                self._processed[tp] = offset

    async def run(self, handler: Callable[[Delivery[Any]], Awaitable[None]]) -> None:
        """Handle each message inside its process span; commit after every batch."""
        while not self.stopping:
            for delivery in await self.poll():
                with process_span(self._tracer, delivery.topic, delivery.record.partition,
                                  delivery.record.offset, delivery.headers, consumer_group=self.group_id,
                                  key=delivery.record.key, value=delivery.value) as span:
                    try:
                        await handler(delivery)
                    except Exception as error:
                        span.record_exception(error)
                        await self.dead_letter(delivery.record, error)
                        continue
                self.mark_processed(delivery.record)
            if self.commit_after_batch:
                await self.commit()

    async def run_batches(self, handler: Callable[[list[Delivery[Any]]], Awaitable[None]]) -> None:
        """Handle each poll as one batch; the handler dead-letters single messages itself.

        The handler calls mark_processed (or dead_letter) per message as it settles it. Should it
        raise anyway, only the messages it had not settled go to the DLQ, each once.
        """
        while not self.stopping:
            deliveries = await self.poll()
            if deliveries:
                self._settled.clear()
                # One short receive span per message joins each producer's trace (the handler
                # processes the batch as a whole afterwards).
                for delivery in deliveries:
                    with process_span(self._tracer, delivery.topic, delivery.record.partition,
                                      delivery.record.offset, delivery.headers, consumer_group=self.group_id,
                                      key=delivery.record.key, value=delivery.value, operation="receive"):
                        pass
                try:
                    await handler(deliveries)
                except Exception as error:
                    unsettled = [d for d in deliveries if self._key(d.record) not in self._settled]
                    logger.exception("batch handler failed; dead-lettering its %d unsettled messages",
                                     len(unsettled))
                    for delivery in unsettled:
                        await self.dead_letter(delivery.record, error)
                for delivery in deliveries:
                    self.mark_processed(delivery.record)
            if self.commit_after_batch:
                await self.commit()
