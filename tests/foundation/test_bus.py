"""The bus against a real broker: typed round trip, DLQ with origin headers, trace context, topics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gaelp.bus import EPISODES, BusConsumer, BusProducer, Delivery, Topic, ensure_topics
from gaelp.config import GaelpSettings
from gaelp.v1 import events_pb2

_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def _tracing() -> None:
    """One in-memory tracer provider for this module (the global provider can be set only once)."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    trace.set_tracer_provider(provider)


@pytest.fixture
def topic(unique_name: str) -> Topic[events_pb2.EpisodeSummary]:
    """A private topic per test carrying EpisodeSummary values, so tests never see each other."""
    return Topic(f"test.{unique_name}", events_pb2.EpisodeSummary)


@pytest.fixture
async def producer(bus_settings: GaelpSettings) -> AsyncIterator[BusProducer]:
    async with BusProducer(bus_settings.kafka) as p:
        yield p


async def _read_dlq(settings: GaelpSettings, source_topic: str, expected: int) -> list:
    consumer = AIOKafkaConsumer(
        settings.kafka.dlq_topic, bootstrap_servers=settings.kafka.bootstrap,
        auto_offset_reset="earliest", enable_auto_commit=False,
    )
    await consumer.start()
    found = []
    try:
        async with asyncio.timeout(30):
            while len(found) < expected:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    found += [r for r in records if (b"dlq.source.topic", source_topic.encode())
                              in [(k.encode(), v) for k, v in r.headers]]
    finally:
        await consumer.stop()
    return found


async def _consume_until(consumer: BusConsumer, received: list[Delivery], count: int) -> None:
    enough = asyncio.Event()

    async def handler(delivery: Delivery) -> None:
        if delivery.value.task == "poison":
            raise ValueError("cannot process a poison episode")
        received.append(delivery)
        if len(received) >= count:
            enough.set()

    task = asyncio.create_task(consumer.run(handler))
    try:
        await asyncio.wait_for(enough.wait(), timeout=40)
    finally:
        consumer.stop_soon()
        await task


async def test_topics_created_with_configured_partitions(bus_settings: GaelpSettings) -> None:
    await ensure_topics(bus_settings.kafka)
    admin = AIOKafkaAdminClient(bootstrap_servers=bus_settings.kafka.bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([EPISODES.name, "gaelp.transitions.v1"])
    finally:
        await admin.close()
    partitions = {d["topic"]: len(d["partitions"]) for d in described}
    assert partitions[EPISODES.name] == bus_settings.kafka.partitions[EPISODES.name]
    assert partitions["gaelp.transitions.v1"] == bus_settings.kafka.partitions["gaelp.transitions.v1"]


async def test_undecodable_and_failing_messages_go_to_dlq_and_consumer_goes_on(
    bus_settings: GaelpSettings, producer: BusProducer, topic: Topic, unique_name: str
) -> None:
    await producer.send(topic, "run-1", events_pb2.EpisodeSummary(run_id="run-1", steps=1))
    bad = await producer.send_raw(topic.name, b"run-1", b"\xff\xfe not protobuf", [("origin", b"test")])
    await producer.send(topic, "run-1", events_pb2.EpisodeSummary(run_id="run-1", task="poison"))
    await producer.send(topic, "run-1", events_pb2.EpisodeSummary(run_id="run-1", steps=2))

    consumer = BusConsumer(bus_settings.kafka, [topic], f"g-{unique_name}", producer)
    await consumer.start()
    received: list[Delivery] = []
    try:
        await _consume_until(consumer, received, 2)
    finally:
        await consumer.stop()
    assert [d.value.steps for d in received] == [1, 2]
    assert consumer.dead_lettered == 2

    dead = await _read_dlq(bus_settings, topic.name, 2)
    by_class = {dict(r.headers)["dlq.error.class"]: r for r in dead}
    undecodable = by_class[b"UndecodableMessage"]
    headers = dict(undecodable.headers)
    assert undecodable.value == b"\xff\xfe not protobuf"
    assert undecodable.key == b"run-1"
    assert headers["dlq.source.partition"] == str(bad.partition).encode()
    assert headers["dlq.source.offset"] == str(bad.offset).encode()
    assert headers["origin"] == b"test"
    assert b"not a EpisodeSummary" in headers["dlq.error.message"]
    assert dict(by_class[b"ValueError"].headers)["dlq.error.message"] == b"cannot process a poison episode"


async def test_consumer_process_span_continues_producer_trace(
    bus_settings: GaelpSettings, producer: BusProducer, topic: Topic, unique_name: str
) -> None:
    _EXPORTER.clear()
    await producer.send(topic, "run-2", events_pb2.EpisodeSummary(run_id="run-2"))
    consumer = BusConsumer(bus_settings.kafka, [topic], f"g-{unique_name}", producer)
    await consumer.start()
    try:
        await _consume_until(consumer, [], 1)
    finally:
        await consumer.stop()
    spans = {span.name: span for span in _EXPORTER.get_finished_spans()}
    send, process = spans[f"{topic.name} send"], spans[f"{topic.name} process"]
    assert process.context.trace_id == send.context.trace_id
    assert process.parent is not None and process.parent.span_id == send.context.span_id
    assert process.kind == trace.SpanKind.CONSUMER


async def test_offsets_committed_so_a_restarted_group_skips_processed_messages(
    bus_settings: GaelpSettings, producer: BusProducer, topic: Topic, unique_name: str
) -> None:
    for steps in (1, 2):
        await producer.send(topic, "k", events_pb2.EpisodeSummary(steps=steps))
    group = f"g-{unique_name}"
    first = BusConsumer(bus_settings.kafka, [topic], group, producer)
    await first.start()
    try:
        await _consume_until(first, [], 2)
    finally:
        await first.stop()
    await producer.send(topic, "k", events_pb2.EpisodeSummary(steps=3))
    second = BusConsumer(bus_settings.kafka, [topic], group, producer)
    await second.start()
    received: list[Delivery] = []
    try:
        await _consume_until(second, received, 1)
    finally:
        await second.stop()
    assert [d.value.steps for d in received] == [3]


async def test_producer_refuses_the_wrong_message_type(producer: BusProducer, topic: Topic) -> None:
    with pytest.raises(TypeError, match="carries EpisodeSummary"):
        await producer.send(topic, "k", events_pb2.Violation())
