"""Reading records without a consumer group: a whole topic, a partition's range of offsets, or
what partitions hold past given offsets.

read_topic is for tools, benchmarks and tests that account for what a topic holds (e.g. every batch
produced); read_range for a consumer that has to fetch records its group consumer did not deliver;
read_from for finding where a partition really ends when a broker's end offset cannot be trusted.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord, TopicPartition


async def read_topic(bootstrap: str, topic: str, timeout_s: float = 120.0) -> list[ConsumerRecord]:
    """Every record on the topic, from the start of each partition to the end seen at the start.

    Subscribed without a group, the consumer learns the partitions from metadata it waits for
    itself. Reading stops once every position has reached that end and two polls came back empty
    (a broker may report the end off by a batch), and never runs past timeout_s.
    """
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    records: list[ConsumerRecord] = []
    try:
        async with asyncio.timeout(timeout_s):
            while not consumer.assignment():
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    records += batch
            partitions = sorted(consumer.assignment())
            ends = await consumer.end_offsets(partitions)
            idle = 0
            while True:
                batches = await consumer.getmany(timeout_ms=1000)
                for batch in batches.values():
                    records += batch
                if any(batches.values()):
                    idle = 0
                    continue
                idle += 1
                behind = [tp for tp in partitions if await consumer.position(tp) < ends[tp]]
                if (not behind and idle >= 2) or idle >= 5:
                    return records
    finally:
        await consumer.stop()


async def read_range(bootstrap: str, topic: str, partition: int, start: int, end: int, *,
                     client_id: str = "gaelp-reader", fetch_max_wait_ms: int = 50,
                     timeout_s: float = 30.0) -> list[ConsumerRecord]:
    """The partition's records from offset start up to, not including, end.

    Offsets the broker no longer holds (retention) are skipped: the position moves to the earliest
    one it has. Raises TimeoutError when end is not reached within timeout_s.
    """
    tp = TopicPartition(topic, partition)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, client_id=client_id, enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_wait_ms=fetch_max_wait_ms)
    await consumer.start()
    records: list[ConsumerRecord] = []
    try:
        consumer.assign([tp])
        consumer.seek(tp, start)
        async with asyncio.timeout(timeout_s):
            while await consumer.position(tp) < end:
                for batch in (await consumer.getmany(tp, timeout_ms=200)).values():
                    records += [record for record in batch if start <= record.offset < end]
        return records
    finally:
        await consumer.stop()


async def read_from(
    bootstrap: str, starts: Mapping[TopicPartition, int], *, client_id: str = "gaelp-reader",
    fetch_max_wait_ms: int = 50, timeout_s: float = 30.0,
) -> dict[TopicPartition, list[ConsumerRecord]]:
    """Each partition's records from its start offset on, as far as the broker serves them now:
    reading stops at the first poll that comes back empty, or after timeout_s with what it has (a
    partition still being written to has no end to wait for)."""
    found: dict[TopicPartition, list[ConsumerRecord]] = {tp: [] for tp in starts}
    if not starts:
        return found
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, client_id=client_id, enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_wait_ms=fetch_max_wait_ms)
    await consumer.start()
    try:
        consumer.assign(list(starts))
        for tp, start in starts.items():
            consumer.seek(tp, start)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while batches := await consumer.getmany(*starts, timeout_ms=2 * fetch_max_wait_ms + 100):
                    for tp, batch in batches.items():
                        found[tp] += batch
        return found
    finally:
        await consumer.stop()
