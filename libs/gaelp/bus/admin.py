"""Topic administration: create the architecture's topics with partition counts from settings."""

from __future__ import annotations

import logging
from collections.abc import Iterable

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
