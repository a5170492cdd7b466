"""Batches as the folds need them: offset order, once each, and records the consumer skipped read back.

faust's consumer dropped or repeated a record around rebalances only now and then (see
metrics.delivery); these tests hand in_order the batches it was seen to deliver. The table is a
stand-in for faust's (values in `data`, changelog writes recorded): the service tests run the real one.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord

from gaelp.bus import BusProducer, Topic
from gaelp.bus.reader import read_range
from gaelp.config import load_settings
from gaelp.v1 import events_pb2
from metrics.delivery import in_order
from metrics.live_table import NEXT_OFFSET_PREFIX, LiveTable
from metrics.state import RunState


class Table:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.changelog: list[tuple[int, str, bytes]] = []

    def keys(self) -> list[str]:
        return list(self.data)

    def send_changelog(self, partition: int, key: str, data: bytes) -> None:
        self.changelog.append((partition, key, data))


def record(offset: int, partition: int = 0, topic: str = "gaelp.episodes.v1") -> ConsumerRecord:
    return ConsumerRecord(topic=topic, partition=partition, offset=offset, timestamp=0, timestamp_type=0,
                          key=b"run", value=str(offset).encode(), checksum=None, serialized_key_size=3,
                          serialized_value_size=1, headers=[])


def offsets(records: list[ConsumerRecord]) -> list[tuple[int, int]]:
    return [(r.partition, r.offset) for r in records]


class Broker:
    """Records by partition; read() answers as gaelp.bus.reader.read_range does, and counts calls."""

    def __init__(self, ends: dict[int, int]) -> None:
        self.ends = ends
        self.reads: list[tuple[int, int, int]] = []

    async def read(self, topic: str, partition: int, start: int, end: int) -> list[ConsumerRecord]:
        self.reads.append((partition, start, end))
        return [record(offset, partition, topic) for offset in range(start, min(end, self.ends[partition]))]


async def test_a_record_dropped_inside_a_batch_is_read_back_and_comes_first() -> None:
    live: LiveTable[RunState] = LiveTable(Table(), RunState)
    live.advance(0, 100)
    broker = Broker({0: 200})
    batch = [record(offset) for offset in range(100, 110) if offset != 104]
    assert offsets(await in_order(batch, live, broker.read)) == [(0, offset) for offset in range(100, 110)]
    assert broker.reads == [(0, 104, 105)]
    assert live.next_offset(0) == 110


async def test_records_missing_between_batches_and_repeats_are_put_right_per_partition() -> None:
    table = Table()
    live: LiveTable[RunState] = LiveTable(table, RunState)
    broker = Broker({0: 100, 1: 100})
    live.advance(0, 10)
    live.flush()  # the next offset as recovered from the changelog
    assert table.data[f"{NEXT_OFFSET_PREFIX}0"] == b"10"
    first = await in_order([record(10), record(11), record(5, 1), record(6, 1)], live, broker.read)
    assert offsets(first) == [(0, 10), (0, 11), (1, 5), (1, 6)]  # partition 1 had none: as delivered
    live.flush()
    # 12 never delivered; 11 and 6 delivered again; 7 delivered twice and out of order.
    second = await in_order([record(13), record(11), record(8, 1), record(7, 1), record(7, 1), record(6, 1)],
                            live, broker.read)
    assert offsets(second) == [(0, 12), (0, 13), (1, 7), (1, 8)]
    assert broker.reads == [(0, 12, 13)]
    live.flush()
    assert (live.next_offset(0), live.next_offset(1)) == (14, 9)
    assert offsets(await in_order([record(13), record(8, 1)], live, broker.read)) == []


async def test_next_offsets_go_to_the_changelog_after_the_values_and_are_no_table_keys() -> None:
    table = Table()
    live: LiveTable[RunState] = LiveTable(table, RunState)
    live.put("run-a", RunState(run_id="run-a"), 2)
    live.advance(2, 41)
    live.flush()
    assert [(partition, key) for partition, key, _ in table.changelog] == [(2, "run-a"),
                                                                          (2, f"{NEXT_OFFSET_PREFIX}2")]
    assert live.keys() == ["run-a"]
    assert live.next_offset(2) == 41 and live.next_offset(0) is None


@pytest.mark.timeout(60)
async def test_read_range_returns_the_partitions_records_between_two_offsets(
    kafka_bootstrap: str, unique_name: str
) -> None:
    topic = Topic(f"test.{unique_name}", events_pb2.EpisodeSummary)
    settings = load_settings(kafka={"bootstrap": kafka_bootstrap, "enable_idempotence": False, "acks": "1"})
    async with BusProducer(settings.kafka) as producer:
        for index in range(12):
            await producer.send(topic, "run", events_pb2.EpisodeSummary(run_id="run", episode_id=str(index)))
    found = await read_range(kafka_bootstrap, topic.name, 0, 3, 9)
    assert [(r.offset, topic.decode(r.value).episode_id) for r in found] == [(o, str(o)) for o in range(3, 9)]

    live: LiveTable[Any] = LiveTable(Table(), RunState)
    live.advance(0, 2)

    async def read(name: str, partition: int, start: int, end: int) -> list[ConsumerRecord]:
        return await read_range(kafka_bootstrap, name, partition, start, end)

    delivered = [record for record in await read_range(kafka_bootstrap, topic.name, 0, 0, 12)
                 if record.offset not in (3, 4, 10)]
    assert [r.offset for r in await in_order(delivered, live, read)] == list(range(2, 12))
