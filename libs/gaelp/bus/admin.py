"""Topic administration: create the architecture's topics with partition counts from settings."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from aiokafka import AIOKafkaClient
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from gaelp.bus.topics import ALL_TOPICS
from gaelp.config.sections.infra import KafkaSettings

logger = logging.getLogger(__name__)


async def ensure_topics(settings: KafkaSettings, extra: Iterable[str] = ()) -> list[str]:
    """Create missing topics; return the names created. Existing topics are left as they are."""
    configs = {topic.name: topic.config for topic in ALL_TOPICS}
    names = [*configs, settings.dlq_topic, *extra]
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap, request_timeout_ms=settings.request_timeout_ms
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                name=name,
                num_partitions=settings.partitions.get(name, 1),
                replication_factor=settings.replication_factor,
                topic_configs=configs.get(name, {}),
            )
            for name in dict.fromkeys(names)
            if name not in existing
        ]
        if not wanted:
            return []
        try:
            await admin.create_topics(wanted, timeout_ms=settings.request_timeout_ms)
        except TopicAlreadyExistsError:
            logger.info("topics created concurrently by another process")
        created = [topic.name for topic in wanted]
        logger.info("created topics", extra={"topics": created})
        return created
    finally:
        await admin.close()


async def partition_counts(settings: KafkaSettings, names: Iterable[str]) -> dict[str, int | None]:
    """Each topic's partition count as the broker reports it; None for a topic that does not exist.

    Asks without creating anything: a metadata request that names a topic could auto-create it with
    the broker's default partition count.
    """
    client = AIOKafkaClient(bootstrap_servers=settings.bootstrap,
                            request_timeout_ms=settings.request_timeout_ms)
    await client.bootstrap()
    try:
        metadata = await client.fetch_all_metadata()
        counts: dict[str, int | None] = {}
        for name in names:
            partitions = metadata.partitions_for_topic(name)
            counts[name] = len(partitions) if partitions is not None else None
        return counts
    finally:
        await client.close()


class PartitionMismatch(RuntimeError):
    """Topics that must have the same partition count (a table and its source) do not."""


def check_partitions(counts: Mapping[str, int | None], expected: Mapping[str, int]) -> None:
    """Raise PartitionMismatch naming every existing topic whose count differs from the expected one."""
    wrong = [f"{name} has {counts[name]} partitions, {expected[name]} expected"
             for name in expected if counts.get(name) is not None and counts[name] != expected[name]]
    if wrong:
        raise PartitionMismatch("; ".join(wrong) + " (kafka.partitions in the settings; a topic "
                                "auto-created by the broker gets its default count: create topics "
                                "with the services' ensure_topics first)")
