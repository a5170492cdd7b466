"""The Kafka bus over aiokafka: typed topics, producer, consumer with DLQ, topic admin, local broker."""

from gaelp.bus.admin import ensure_topics
from gaelp.bus.consumer import BusConsumer, Delivery
from gaelp.bus.producer import BusProducer
from gaelp.bus.topics import (
    ALL_TOPICS,
    ASSESSMENTS,
    EPISODES,
    LEARNER_METRICS,
    POLICY,
    RUN_EVENTS,
    TRANSITIONS,
    VIOLATIONS,
    Topic,
    UndecodableMessage,
)

__all__ = [
    "ALL_TOPICS",
    "ASSESSMENTS",
    "EPISODES",
    "LEARNER_METRICS",
    "POLICY",
    "RUN_EVENTS",
    "TRANSITIONS",
    "VIOLATIONS",
    "BusConsumer",
    "BusProducer",
    "Delivery",
    "Topic",
    "UndecodableMessage",
    "ensure_topics",
]
