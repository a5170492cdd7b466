"""Reading records without a consumer group: a whole topic, or one partition's range of offsets.

read_topic is for tools, benchmarks and tests that account for what a topic holds (e.g. every batch
produced); read_range for a consumer that has to fetch records its group consumer did not deliver.
"""

from __future__ import annotations

import asyncio

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
