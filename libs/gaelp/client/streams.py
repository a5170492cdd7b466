"""Reading topics as an operator: manual partition assignment, no consumer group, no commits.

Nothing here joins a group or commits an offset, so tailing a topic never moves the services'
positions nor triggers a rebalance.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from google.protobuf.message import Message

from gaelp.bus.topics import EPISODES, Topic, UndecodableMessage
from gaelp.client.errors import ClientError, ServiceUnavailable
from gaelp.client.jsonview import message_json
from gaelp.v1 import common_pb2, events_pb2

METADATA_TIMEOUT_S = 30.0


async def _assigned_consumer(bootstrap: str, topic: str) -> tuple[AIOKafkaConsumer, list[TopicPartition]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    try:
        async with asyncio.timeout(METADATA_TIMEOUT_S):
            await consumer.start()
            partitions = consumer.partitions_for_topic(topic)
            while not partitions:
                await consumer.topics()  # a metadata refresh: the topic may be new to this client
                partitions = consumer.partitions_for_topic(topic)
                if not partitions:
                    await asyncio.sleep(0.5)
    except (TimeoutError, OSError) as error:
        await consumer.stop()
        raise ServiceUnavailable(f"broker {bootstrap}: no metadata for {topic}: {error!r}") from None
    except Exception as error:
        await consumer.stop()
        raise ServiceUnavailable(f"broker {bootstrap}: {error}") from None
    assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(assigned)
    await consumer.seek_to_beginning(*assigned)
    return consumer, assigned


M = TypeVar("M", bound=Message)


async def read_messages(bootstrap: str, topic: Topic[M], *, follow: bool = False,
                        idle_polls: int = 2) -> AsyncIterator[tuple[Any, M]]:
    """(record, decoded value) from the start of every partition; to the current end, or forever.

    Records that do not decode are skipped: they are the DLQ's business, not an operator's view.
    """
    consumer, assigned = await _assigned_consumer(bootstrap, topic.name)
    try:
        ends = await consumer.end_offsets(assigned)
        idle = 0
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    try:
                        yield record, topic.decode(record.value)
                    except UndecodableMessage:
                        continue
            if follow:
                continue
            if any(batches.values()):
                idle = 0
                continue
            idle += 1
            behind = [tp for tp in assigned if await consumer.position(tp) < ends[tp]]
            if not behind and idle >= idle_polls:
                return
            if idle >= 10 * idle_polls:
                raise ClientError(f"{topic.name}: the end seen at the start was not reached")
    finally:
        await consumer.stop()


def episode_json(episode: events_pb2.EpisodeSummary) -> dict[str, Any]:
    """One episode as an operator reads it: proto field names, phase by name, zeros included."""
    data = message_json(episode)
    data["phase"] = common_pb2.Phase.Name(episode.phase)
    return data


async def tail_episodes(bootstrap: str, *, run_id: str = "", phase: int = 0,
                        follow: bool = False) -> AsyncIterator[events_pb2.EpisodeSummary]:
    async for _, episode in read_messages(bootstrap, EPISODES, follow=follow):
        if run_id and episode.run_id != run_id:
            continue
        if phase and episode.phase != phase:
            continue
        yield episode
