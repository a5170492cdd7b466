"""The recovery's check of changelog ends against a real broker: a partition read past its reported
end is read from the log, and passes when the log holds what was read (a batch whose end the local
broker under-reports, a record acknowledged a moment later); one whose log never does stops the
worker, as faust's own check did for any changelog inconsistency."""

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
from metrics.delivery import RangeReader
from metrics.recovery import CatchingUpRecovery, CatchingUpTableManager, ChangelogLog, confirm_read
from metrics.streams import faust_app

RECORDS = 3

Changelog = tuple[AIOKafkaProducer, AIOKafkaConsumer, TP]


@pytest.fixture
async def changelog(kafka_bootstrap: str, unique_name: str) -> AsyncIterator[Changelog]:
    """A one-partition topic holding RECORDS records sent one by one, a producer for it and a
    consumer to ask its ends."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(unique_name, 1, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks=1, enable_idempotence=False,
                                linger_ms=50)
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


def reader(kafka_bootstrap: str, within_s: float) -> RangeReader:
    return ChangelogLog(load_settings(kafka={"bootstrap": kafka_bootstrap}).kafka, within_s).read


async def reported_highwater(consumer: AIOKafkaConsumer, tp: TP) -> int:
    """faust's highwater from the broker's ListOffsets: the end offset - 1."""
    return (await consumer.end_offsets([TopicPartition(tp.topic, tp.partition)]))[TopicPartition(*tp)] - 1


async def acknowledge_later(producer: AIOKafkaProducer, tp: TP) -> None:
    """The next record's produce, 0.3 s from now."""
    await asyncio.sleep(0.3)
    await producer.send_and_wait(tp.topic, b"state", partition=0)


async def test_a_batch_read_whole_is_confirmed_from_the_log_whatever_end_the_broker_reports(
    changelog: Changelog, kafka_bootstrap: str,
) -> None:
    """faust's producer writes changelog records in batches. Tansu reports the end of a partition as
    its last batch's first offset + 1 (here 4 where the log ends at offset 5), Apache Kafka as the
    last offset + 1; either way the last offset read is confirmed from the log."""
    producer, consumer, tp = changelog
    last = await send_batch(producer, tp)
    highwaters = {tp: await reported_highwater(consumer, tp)}
    still = await confirm_read(reader(kafka_bootstrap, 10.0), {tp: last}, highwaters, [tp])
    assert still == set() and highwaters[tp] == last == 2 * RECORDS - 1


async def test_a_record_acknowledged_a_moment_later_is_confirmed_once_the_log_has_it(
    changelog: Changelog, kafka_bootstrap: str,
) -> None:
    producer, _, tp = changelog
    read = {tp: RECORDS}  # the worker read offset 3 while its produce was in flight
    highwaters = {tp: RECORDS - 1}
    acknowledged = asyncio.create_task(acknowledge_later(producer, tp))
    still = await confirm_read(reader(kafka_bootstrap, 10.0), read, highwaters, [tp])
    await acknowledged
    assert still == set() and highwaters[tp] == RECORDS


async def test_a_log_that_never_holds_what_was_read_is_reported_after_the_bound(
    changelog: Changelog, kafka_bootstrap: str,
) -> None:
    _, consumer, tp = changelog
    read = {tp: RECORDS + 5}
    highwaters = {tp: await reported_highwater(consumer, tp)}
    started = asyncio.get_running_loop().time()
    still = await confirm_read(reader(kafka_bootstrap, 0.5), read, highwaters, [tp])
    assert still == {tp}
    assert highwaters[tp] == RECORDS - 1  # the log's real end, which the check then refuses
    assert asyncio.get_running_loop().time() - started >= 0.5


async def test_partitions_read_within_their_end_are_not_read_again() -> None:
    tp, unread, first = TP("changelog", 0), TP("changelog", 1), TP("changelog", 2)
    asked: list[tuple[str, int, int, int]] = []

    async def read_log(topic: str, partition: int, start: int, end: int) -> list:
        asked.append((topic, partition, start, end))
        return []

    read: dict[TP, int | None] = {tp: RECORDS - 1, unread: None, first: 0}
    highwaters = {tp: RECORDS - 1, unread: -1, first: -1}
    assert await confirm_read(read_log, read, highwaters, [tp, unread, first]) == set() and asked == []


def recovery_of(kafka_bootstrap: str, tmp_path: Path, catch_up_s: float) -> CatchingUpRecovery:
    settings = load_settings(kafka={"bootstrap": kafka_bootstrap},
                             metrics={"highwater_catch_up_s": catch_up_s},
                             storage={"data_dir": str(tmp_path)})
    app = faust_app(settings)
    assert isinstance(app.tables, CatchingUpTableManager)
    assert not app.conf.recovery_consistency_check  # the recovery's own check replaces faust's
    recovery = app.tables.recovery
    assert isinstance(recovery, CatchingUpRecovery) and recovery.changelogs is not None
    return recovery


def consumer_of(consumer: AIOKafkaConsumer) -> SimpleNamespace:
    """The two questions faust's recovery asks its consumer, answered by the broker."""
    async def ends(*tps: TP) -> Mapping[TP, int | None]:
        answer = await consumer.end_offsets([TopicPartition(tp.topic, tp.partition) for tp in tps])
        return {TP(tp.topic, tp.partition): end for tp, end in answer.items()}

    async def starts(*tps: TP) -> Mapping[TP, int | None]:
        answer = await consumer.beginning_offsets([TopicPartition(tp.topic, tp.partition) for tp in tps])
        return {TP(tp.topic, tp.partition): start for tp, start in answer.items()}

    return SimpleNamespace(highwaters=ends, earliest_offsets=starts)


async def send_batch(producer: AIOKafkaProducer, tp: TP) -> int:
    """RECORDS more records in one batch; the last one's offset."""
    sent = [await producer.send(tp.topic, b"state", partition=0) for _ in range(RECORDS)]
    return max(metadata.offset for metadata in await asyncio.gather(*sent))


async def test_the_metrics_app_recovers_up_to_the_logs_last_offset_not_the_reported_end(
    changelog: Changelog, kafka_bootstrap: str, tmp_path: Path,
) -> None:
    """An end reported a batch short would end the recovery before the batch's last records, and the
    table would keep older values for their keys: the active highwaters are the logs' own."""
    producer, consumer, tp = changelog
    last = await send_batch(producer, tp)
    empty = TP(f"{tp.topic}-empty", 0)
    recovery = recovery_of(kafka_bootstrap, tmp_path, catch_up_s=10.0)
    recovery.active_highwaters[empty] = -1

    async def ends(*tps: TP) -> Mapping[TP, int | None]:
        return {**(await consumer_of(consumer).highwaters(tp)), empty: 0}

    active = recovery.active_highwaters
    await recovery._build_highwaters(SimpleNamespace(highwaters=ends), {tp, empty}, active, "active")
    assert recovery.active_highwaters[tp] == last == 2 * RECORDS - 1
    assert recovery.active_highwaters[empty] == -1
    standby = {tp: 0}
    asks = consumer_of(consumer)
    await recovery._build_highwaters(asks, {tp}, standby, "standby")
    assert standby[tp] == await reported_highwater(consumer, tp)  # standbys read on: the broker's figure


async def test_the_metrics_app_checks_a_record_read_after_its_highwaters_once_the_log_has_it(
    changelog: Changelog, kafka_bootstrap: str, tmp_path: Path,
) -> None:
    """The order CI failed in: faust built the highwaters, its changelog reader then folded a record
    past them, and the check saw offset > highwater. The service's recovery checks after building
    the offsets, against the log."""
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


async def test_the_metrics_app_stops_on_a_changelog_whose_log_never_holds_what_was_read(
    changelog: Changelog, kafka_bootstrap: str, tmp_path: Path,
) -> None:
    _, consumer, tp = changelog
    recovery = recovery_of(kafka_bootstrap, tmp_path, catch_up_s=0.5)
    asks = consumer_of(consumer)
    await recovery._build_highwaters(asks, {tp}, recovery.active_highwaters, "active")
    recovery.active_offsets[tp] = RECORDS + 5  # the topic was recreated under the worker
    with pytest.raises(ConsistencyError, match=r"\(8 > 2\)"):
        await recovery._build_offsets(asks, {tp}, recovery.active_offsets, "active")
