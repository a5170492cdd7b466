"""The bus against a real broker: typed round trip, DLQ with origin headers, trace context, topics."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gaelp.bus import EPISODES, BusConsumer, BusProducer, Delivery, Topic, ensure_topics
from gaelp.bus.tensors import to_tensor
from gaelp.bus.topics import ALL_TOPICS, ASSESSMENTS, LEARNER_METRICS, POLICY, TRANSITIONS, VIOLATIONS
from gaelp.config import GaelpSettings
from gaelp.v1 import common_pb2, events_pb2

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
    send, process = spans[f"publish {topic.name}"], spans[f"process {topic.name}"]
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


async def _dlq_of_group(settings: GaelpSettings, group: str, key: bytes, expected: int) -> list[Any]:
    """The DLQ records one group sent for one key: all of them, read until two idle polls after
    `expected` were found (a duplicate would show up as one more)."""
    consumer = AIOKafkaConsumer(settings.kafka.dlq_topic, bootstrap_servers=settings.kafka.bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    found: list[Any] = []
    idle = 0
    try:
        async with asyncio.timeout(60):
            while len(found) < expected or idle < 2:
                batches = await consumer.getmany(timeout_ms=500)
                records = [r for rs in batches.values() for r in rs]
                idle = 0 if records else idle + 1
                found += [r for r in records if r.key == key
                          and ("dlq.consumer.group", group.encode()) in list(r.headers)]
    finally:
        await consumer.stop()
    return found


def _tensor(array: np.ndarray) -> common_pb2.Tensor:
    return to_tensor(array)


def _transitions(key: str, name: str) -> events_pb2.TransitionBatch:
    steps, lanes, width = 4, 2, 3
    return events_pb2.TransitionBatch(
        run_id=key, actor_id=f"{key}-actor", batch_id=f"{key}:{name}", policy_version=1, task="t",
        observations=_tensor(np.zeros((steps, lanes, width), np.float32)),
        actions=_tensor(np.zeros((steps, lanes, 2), np.float32)),
        rewards=_tensor(np.ones((steps, lanes), np.float32)),
        dones=_tensor(np.zeros((steps, lanes), np.float32)),
        truncations=_tensor(np.zeros((steps, lanes), np.float32)),
        log_probs=_tensor(np.zeros((steps, lanes), np.float32)),
        values=_tensor(np.zeros((steps, lanes), np.float32)),
        next_observations=_tensor(np.zeros((lanes, width), np.float32)),
    )


def _overflowing(key: str) -> events_pb2.TransitionBatch:
    """rewards of (2**31 - 1)**3 elements: a count int64 cannot hold, with 32 bytes of data."""
    batch = _transitions(key, "overflow")
    batch.rewards.CopyFrom(common_pb2.Tensor(dtype="float32", shape=[2**31 - 1, 2**31 - 1, 2**31 - 1],
                                             data=b"\0" * 32))
    return batch


def _with_nan(key: str) -> events_pb2.TransitionBatch:
    batch = _transitions(key, "nan")
    rewards = np.ones((4, 2), np.float32)
    rewards[1, 1] = np.nan
    batch.rewards.CopyFrom(_tensor(rewards))
    return batch


SIM = common_pb2.PHASE_SIMULATION
# Per topic: a factory of good messages (key -> message) and the bad ones (name -> message).
MIXED_POLLS: dict[str, tuple[Any, Any]] = {
    EPISODES.name: (
        lambda key, i: events_pb2.EpisodeSummary(run_id=key, episode_id=f"{key}-{i}", phase=SIM, roas=2.0),
        lambda key: {
            "unknown phase": events_pb2.EpisodeSummary(run_id=key, phase=17),  # type: ignore[arg-type]
            "NaN roas": events_pb2.EpisodeSummary(run_id=key, phase=SIM, roas=math.nan),
            "negative clicks": events_pb2.EpisodeSummary(run_id=key, phase=SIM, clicks=-3),
            "no run id": events_pb2.EpisodeSummary(phase=SIM),
        },
    ),
    TRANSITIONS.name: (
        lambda key, i: _transitions(key, str(i)),
        lambda key: {"overflowing shape": _overflowing(key), "NaN reward": _with_nan(key),
                     "no batch id": events_pb2.TransitionBatch(run_id=key, actor_id="a")},
    ),
    VIOLATIONS.name: (
        lambda key, i: events_pb2.Violation(violation_id=f"v{i}", campaign_id="c", run_id=key, rule="daily",
                                            severity=events_pb2.SEVERITY_WARNING, amount=5.0, phase=SIM),
        lambda key: {
            "infinite amount": events_pb2.Violation(violation_id="x", run_id=key, rule="r", amount=math.inf),
            "negative amount": events_pb2.Violation(violation_id="x", run_id=key, rule="r", amount=-1.0),
            "unknown severity": events_pb2.Violation(violation_id="x", run_id=key, rule="r",
                                                     severity=9),  # type: ignore[arg-type]
            "no violation id": events_pb2.Violation(run_id=key, rule="r"),
        },
    ),
    POLICY.name: (
        lambda key, i: events_pb2.PolicyUpdate(run_id=key, version=i, algorithm="ppo", weights=b"w"),
        lambda key: {"negative version": events_pb2.PolicyUpdate(run_id=key, version=-1, algorithm="ppo",
                                                                 weights=b"w"),
                     "no weights": events_pb2.PolicyUpdate(run_id=key, version=2, algorithm="ppo")},
    ),
    LEARNER_METRICS.name: (
        lambda key, i: events_pb2.LearnerStats(run_id=key, policy_version=i, entropy=0.5, losses={"pg": 0.1}),
        lambda key: {"NaN loss": events_pb2.LearnerStats(run_id=key, losses={"pg": math.nan}),
                     "negative samples": events_pb2.LearnerStats(run_id=key, trained_samples=-1)},
    ),
    ASSESSMENTS.name: (
        lambda key, i: events_pb2.GraduationAssessment(run_id=key, phase=SIM, criteria=[
            events_pb2.CriterionResult(name="c", value=0.5, threshold=0.7, comparison=">=")]),
        lambda key: {
            "unspecified phase": events_pb2.GraduationAssessment(run_id=key),
            "NaN criterion": events_pb2.GraduationAssessment(run_id=key, phase=SIM, criteria=[
                events_pb2.CriterionResult(name="c", value=math.nan, threshold=0.7, comparison=">=")]),
        },
    ),
}


@pytest.mark.parametrize("topic_name", sorted(MIXED_POLLS))
async def test_a_poll_mixing_bad_and_good_messages_dead_letters_each_bad_one_once(
    topic_name: str, bus_settings: GaelpSettings, producer: BusProducer, unique_name: str
) -> None:
    topic = {t.name: t for t in ALL_TOPICS}[topic_name]
    good, bad = MIXED_POLLS[topic_name]
    key = f"mixed-{unique_name}"
    bad_messages = bad(key)
    values: list[tuple[str, bytes]] = [("good 0", good(key, 1).SerializeToString()),
                                       ("undecodable", b"\xff\xfe not protobuf")]
    for index, (name, message) in enumerate(bad_messages.items()):
        values += [(name, message.SerializeToString()), (f"good {index + 1}", good(key, index + 2)
                                                         .SerializeToString())]
    sent = {}
    for name, value in values:
        sent[name] = await producer.send_raw(topic.name, key.encode(), value, [])
    assert len({meta.partition for meta in sent.values()}) == 1
    good_offsets = sorted(meta.offset for name, meta in sent.items() if name.startswith("good"))
    bad_offsets = sorted(meta.offset for name, meta in sent.items() if not name.startswith("good"))

    group = f"g-{unique_name}"
    handled: list[int] = []
    all_good = asyncio.Event()

    async def handler(delivery: Delivery[Any]) -> None:
        if delivery.key == key:
            handled.append(delivery.record.offset)
            if len(handled) >= len(good_offsets):
                all_good.set()

    consumer = BusConsumer(bus_settings.kafka, [topic], group, producer)
    await consumer.start()
    task = asyncio.create_task(consumer.run(handler))
    try:
        await asyncio.wait_for(all_good.wait(), 60)
    finally:
        await consumer.finish(task, 10)
        await consumer.stop()
    assert sorted(handled) == good_offsets

    dead = await _dlq_of_group(bus_settings, group, key.encode(), len(bad_offsets))
    offsets = sorted(int(dict(r.headers)["dlq.source.offset"]) for r in dead)
    assert offsets == bad_offsets, "each bad message once, no good one"
    for record in dead:
        headers = {k: v.decode() for k, v in record.headers}
        assert headers["dlq.source.topic"] == topic.name
        assert headers["dlq.source.partition"] == str(sent["good 0"].partition)
        assert headers["dlq.error.class"] in {"UndecodableMessage", "InvalidMessage"}
