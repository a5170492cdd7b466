"""Reading a whole topic from its start to its current end, without a consumer group.

For tools, benchmarks and tests that account for what a topic holds (e.g. every batch produced).
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord


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
