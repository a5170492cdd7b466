"""The dead-letter queue: the original key and bytes, with headers naming where they came from."""

from __future__ import annotations

import logging

from aiokafka.structs import ConsumerRecord

from gaelp.bus.producer import BusProducer

logger = logging.getLogger(__name__)

SOURCE_TOPIC = "dlq.source.topic"
SOURCE_PARTITION = "dlq.source.partition"
SOURCE_OFFSET = "dlq.source.offset"
ERROR_CLASS = "dlq.error.class"
ERROR_MESSAGE = "dlq.error.message"
CONSUMER_GROUP = "dlq.consumer.group"
_MAX_ERROR_CHARS = 2000


class DeadLetterQueue:
    def __init__(self, producer: BusProducer, topic: str, group_id: str) -> None:
        self.producer = producer
        self.topic = topic
        self.group_id = group_id

    async def send(self, record: ConsumerRecord, error: BaseException) -> None:
        headers = [
            *[(k, v) for k, v in (record.headers or ()) if not k.startswith("dlq.")],
            (SOURCE_TOPIC, record.topic.encode()),
            (SOURCE_PARTITION, str(record.partition).encode()),
            (SOURCE_OFFSET, str(record.offset).encode()),
            (ERROR_CLASS, type(error).__name__.encode()),
            (ERROR_MESSAGE, str(error)[:_MAX_ERROR_CHARS].encode()),
            (CONSUMER_GROUP, self.group_id.encode()),
        ]
        await self.producer.send_raw(self.topic, record.key, record.value, headers)
        logger.warning(
            "sent message to the DLQ",
            extra={
                "source_topic": record.topic,
                "source_partition": record.partition,
                "source_offset": record.offset,
                "error_class": type(error).__name__,
                "error": str(error)[:200],
            },
        )
