"""The recovery's catch-up against a real broker: a partition whose end offset lags what the worker
already read is asked again until the end covers it, and one whose end never does stays reported
(the worker then stops, as faust's own check did for any changelog inconsistency)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faust.exceptions import ConsistencyError
from faust.types import TP

from gaelp.config import load_settings
from metrics.recovery import CatchingUpRecovery, CatchingUpTableManager, EndOffsets, catch_up
from metrics.streams import faust_app

RECORDS = 3

Changelog = tuple[AIOKafkaProducer, AIOKafkaConsumer, TP]


@pytest.fixture
async def changelog(kafka_bootstrap: str, unique_name: str) -> AsyncIterator[Changelog]:
    """A one-partition topic holding RECORDS records, a producer for it and a consumer to ask its end."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(unique_name, 1, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks=1, enable_idempotence=False)
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    await producer.start()
    await consumer.start()
    try:
        for _ in range(RECORDS):
            await producer.send_and_wait(unique_name, b"state", partition=0)
        yield producer, consumer, TP(unique_name, 0)
    finally:
        await consumer.stop()
        await producer.stop()


def end_offsets_of(consumer: AIOKafkaConsumer) -> EndOffsets:
    async def end_offsets(*tps: TP) -> Mapping[TP, int | None]:
        answer = await consumer.end_offsets([TopicPartition(tp.topic, tp.partition) for tp in tps])
        return {TP(tp.topic, tp.partition): end for tp, end in answer.items()}

    return end_offsets


async def acknowledge_later(producer: AIOKafkaProducer, tp: TP) -> None:
    """The next record's produce, acknowledged 0.3 s from now: the end offset then covers it."""
    await asyncio.sleep(0.3)
    await producer.send_and_wait(tp.topic, b"state", partition=0)


async def test_an_end_offset_behind_a_read_record_is_asked_again_until_it_covers_it(
    changelog: Changelog,
) -> None:
    producer, consumer, tp = changelog
    read = {tp: RECORDS}  # the worker read offset 3 while its produce was in flight
    highwaters = {tp: RECORDS - 1}  # the broker's end (3) counts offsets 0-2 only

    acknowledged = asyncio.create_task(acknowledge_later(producer, tp))
    still = await catch_up(end_offsets_of(consumer), read, highwaters, [tp], within_s=10.0)
    await acknowledged
    assert still == set()
    assert highwaters[tp] == RECORDS


async def test_an_end_offset_that_never_covers_a_read_record_is_reported_after_the_bound(
    changelog: Changelog,
) -> None:
    _, consumer, tp = changelog
    read = {tp: RECORDS + 5}
    highwaters = {tp: RECORDS - 1}
    started = asyncio.get_running_loop().time()
    still = await catch_up(end_offsets_of(consumer), read, highwaters, [tp], within_s=0.5)
    assert still == {tp}
    assert highwaters[tp] == RECORDS - 1  # the broker's real answer, which faust's check then refuses
    assert asyncio.get_running_loop().time() - started >= 0.5


async def test_partitions_read_within_their_end_are_not_asked_again() -> None:
    tp, unread = TP("changelog", 0), TP("changelog", 1)
    asked: list[tuple[TP, ...]] = []

    async def end_offsets(*tps: TP) -> Mapping[TP, int | None]:
        asked.append(tps)
        return {}

    read: dict[TP, int | None] = {tp: RECORDS - 1, unread: None}
    still = await catch_up(end_offsets, read, {tp: RECORDS - 1, unread: -1}, [tp, unread], within_s=1.0)
    assert still == set() and asked == []


def recovery_of(kafka_bootstrap: str, tmp_path: Path, catch_up_s: float) -> CatchingUpRecovery:
    settings = load_settings(kafka={"bootstrap": kafka_bootstrap},
                             metrics={"highwater_catch_up_s": catch_up_s},
                             storage={"data_dir": str(tmp_path)})
    app = faust_app(settings)
    assert isinstance(app.tables, CatchingUpTableManager)
    assert not app.conf.recovery_consistency_check  # the recovery's own check replaces faust's
    recovery = app.tables.recovery
    assert isinstance(recovery, CatchingUpRecovery) and recovery.catch_up_s == catch_up_s
    return recovery


def consumer_of(consumer: AIOKafkaConsumer) -> SimpleNamespace:
    """The two questions faust's recovery asks its consumer, answered by the broker."""
    async def earliest_offsets(*tps: TP) -> Mapping[TP, int | None]:
        answer = await consumer.beginning_offsets([TopicPartition(tp.topic, tp.partition) for tp in tps])
        return {TP(tp.topic, tp.partition): start for tp, start in answer.items()}

    return SimpleNamespace(highwaters=end_offsets_of(consumer), earliest_offsets=earliest_offsets)


async def test_the_metrics_app_checks_a_record_read_after_its_highwaters_once_the_end_covers_it(
    changelog: Changelog, kafka_bootstrap: str, tmp_path: Path,
) -> None:
    """The order CI failed in: faust built the highwaters (end 3: offsets 0-2), its changelog reader
    then folded offset 3, fetched while its produce was in flight, and the check saw 3 > 2. The
    service's recovery checks after building the offsets, once the end covers offset 3."""
    producer, consumer, tp = changelog
    recovery = recovery_of(kafka_bootstrap, tmp_path, catch_up_s=10.0)
    asks = consumer_of(consumer)
    await recovery._build_highwaters(asks, {tp}, recovery.active_highwaters, "active")
    assert recovery.active_highwaters[tp] == RECORDS - 1
    recovery.active_offsets[tp] = RECORDS

    acknowledged = asyncio.create_task(acknowledge_later(producer, tp))
    await recovery._build_offsets(asks, {tp}, recovery.active_offsets, "active")
    await acknowledged
    assert recovery.active_highwaters[tp] == RECORDS and recovery.active_offsets[tp] == RECORDS


async def test_the_metrics_app_stops_on_a_changelog_whose_end_never_covers_what_was_read(
    changelog: Changelog, kafka_bootstrap: str, tmp_path: Path,
) -> None:
    _, consumer, tp = changelog
    recovery = recovery_of(kafka_bootstrap, tmp_path, catch_up_s=0.5)
    asks = consumer_of(consumer)
    await recovery._build_highwaters(asks, {tp}, recovery.active_highwaters, "active")
    recovery.active_offsets[tp] = RECORDS + 5  # the topic was recreated under the worker
    with pytest.raises(ConsistencyError, match=r"\(8 > 2\)"):
        await recovery._build_offsets(asks, {tp}, recovery.active_offsets, "active")
