"""Operator events from Kafka to the real Pub/Sub emulator through the metrics service process:
every event of a run arrives, in order per run, none missing or duplicated after de-duplication on
event_id, also when the service is killed and restarted; what cannot be published goes to the DLQ."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from google.api_core.exceptions import DeadlineExceeded
from google.cloud import pubsub_v1

from gaelp.bus import BusProducer, ensure_topics
from gaelp.bus.dlq import ERROR_MESSAGE, SOURCE_OFFSET, SOURCE_PARTITION, SOURCE_TOPIC
from gaelp.bus.topics import RUN_EVENTS, VIOLATIONS
from gaelp.config import load_settings
from gaelp.embedded.pubsub_emulator import ordered_subscriptions
from gaelp.v1 import common_pb2, events_pb2

EVENTS_PER_RUN = 30
PULL_WAIT_S = 2.0  # an empty pull answers after this long
VIOLATIONS_PER_RUN = 8


def run_event(run_id: str, index: int) -> events_pb2.RunEvent:
    event = events_pb2.RunEvent(event_id=f"{run_id}-event-{index}", run_id=run_id)
    if index % 3 == 2:
        event.approval_requested.approval_id = f"{run_id}-approval-{index}"
        event.approval_requested.kind = "budget_step"
        event.approval_requested.campaign_id = "c1"
    else:
        event.phase_transition.from_phase = common_pb2.PHASE_SIMULATION
        event.phase_transition.to_phase = common_pb2.PHASE_HISTORICAL
        event.phase_transition.reason = f"transition {index}"
    return event


def violation(run_id: str, index: int) -> events_pb2.Violation:
    return events_pb2.Violation(violation_id=f"{run_id}-violation-{index}", campaign_id=f"c{index % 2}",
                                run_id=run_id, rule="daily_limit", severity=events_pb2.SEVERITY_WARNING,
                                amount=float(index), phase=common_pb2.PHASE_SIMULATION)


async def produce(bootstrap: str, runs: list[str], indices: range) -> None:
    settings = load_settings(kafka={"bootstrap": bootstrap, "enable_idempotence": False, "acks": "1"})
    await ensure_topics(settings.kafka)
    async with BusProducer(settings.kafka) as producer:
        for index in indices:
            for run_id in runs:
                await producer.send(RUN_EVENTS, run_id, run_event(run_id, index))
                if index < VIOLATIONS_PER_RUN:
                    await producer.send(VIOLATIONS, f"c{index % 2}", violation(run_id, index))


class Subscriptions:
    """Ordered pull subscriptions on the service's topics, created before anything is published."""

    def __init__(self, project: str, topics: dict[str, str], prefix: str) -> None:
        self.subscriber = pubsub_v1.SubscriberClient()
        self.paths = ordered_subscriptions(self.subscriber, project, topics, prefix)
        self.received: dict[str, list[tuple[str, str, dict[str, str], bytes]]] = defaultdict(list)

    def pull(self) -> int:
        """One pull round on every subscription (acking what came); the number of messages."""
        count = 0
        for kind, path in self.paths.items():
            try:
                response = self.subscriber.pull(request={"subscription": path, "max_messages": 200},
                                                timeout=PULL_WAIT_S)
            except DeadlineExceeded:  # the emulator holds an empty pull open until the deadline
                continue
            if not response.received_messages:
                continue
            for received in response.received_messages:
                message = received.message
                self.received[kind].append((message.ordering_key, message.attributes["event_id"],
                                            dict(message.attributes), message.data))
            self.subscriber.acknowledge(request={"subscription": path,
                                                 "ack_ids": [m.ack_id for m in response.received_messages]})
            count += len(response.received_messages)
        return count

    def unique_ids(self, kind: str, run_id: str) -> list[str]:
        """Event ids of one run in arrival order, duplicates (redeliveries) dropped."""
        seen: dict[str, None] = {}
        for key, event_id, _, _ in self.received[kind]:
            if key == run_id:
                seen.setdefault(event_id, None)
        return list(seen)

    def pull_until(self, done: Any, timeout_s: float, service: Any) -> None:
        deadline = time.monotonic() + timeout_s
        while not done() and time.monotonic() < deadline:
            if service.process is not None and service.process.poll() is not None:
                raise AssertionError(f"the service exited:\n{service.log()}")
            if self.pull() == 0:
                time.sleep(0.5)

    def close(self) -> None:
        for path in self.paths.values():
            self.subscriber.delete_subscription(request={"subscription": path}, timeout=30)


def test_every_event_of_a_run_arrives_once_in_order_across_a_restart(
    publishing_service: tuple[Any, dict[str, Any]], kafka_bootstrap: str, unique_name: str,
) -> None:
    service, pubsub = publishing_service
    runs = [f"{unique_name}-a", f"{unique_name}-b"]
    settings = load_settings(pubsub=pubsub)
    subscriptions = Subscriptions(pubsub["project_id"], {
        "run_events": settings.pubsub.topics.run_events,
        "violations": settings.pubsub.topics.violations,
    }, unique_name)
    try:
        half = EVENTS_PER_RUN // 2
        asyncio.run(produce(kafka_bootstrap, runs, range(half)))
        service.start()
        # Some, not necessarily all, of the first half is through when the process is killed.
        subscriptions.pull_until(lambda: len(subscriptions.unique_ids("run_events", runs[0])) >= 3,
                                 timeout_s=120, service=service)
        service.kill()
        asyncio.run(produce(kafka_bootstrap, runs, range(half, EVENTS_PER_RUN)))
        service.start()

        def all_arrived() -> bool:
            return all(len(subscriptions.unique_ids("run_events", run)) == EVENTS_PER_RUN
                       and len(subscriptions.unique_ids("violations", run)) == VIOLATIONS_PER_RUN
                       for run in runs)

        subscriptions.pull_until(all_arrived, timeout_s=180, service=service)
        assert service.stop() == 0, service.log()
        subscriptions.pull()  # anything the drain flushed

        for run_id in runs:
            assert subscriptions.unique_ids("run_events", run_id) == [
                f"{run_id}-event-{i}" for i in range(EVENTS_PER_RUN)]
            # Violations are keyed by campaign on Kafka: their order holds per campaign of the run.
            violation_ids = subscriptions.unique_ids("violations", run_id)
            assert sorted(violation_ids) == sorted(
                f"{run_id}-violation-{i}" for i in range(VIOLATIONS_PER_RUN))
            for campaign in (0, 1):
                assert [v for v in violation_ids if int(v.rsplit("-", 1)[1]) % 2 == campaign] == [
                    f"{run_id}-violation-{i}" for i in range(campaign, VIOLATIONS_PER_RUN, 2)]
        for _, event_id, attributes, data in subscriptions.received["run_events"]:
            event = events_pb2.RunEvent.FromString(data)
            assert event.event_id == event_id
            assert attributes["run_id"] == event.run_id
            assert attributes["message_type"] == "gaelp.v1.RunEvent"
            assert attributes["event_type"] == event.WhichOneof("event")
            if attributes["event_type"] == "approval_requested":
                assert attributes["approval_id"] == event.approval_requested.approval_id
            assert attributes["source"].startswith(f"{RUN_EVENTS.name}:")
        for _, event_id, attributes, data in subscriptions.received["violations"]:
            record = events_pb2.Violation.FromString(data)
            assert attributes["event_type"] == "violation"
            assert event_id == record.violation_id == attributes["violation_id"]
            assert attributes["campaign_id"] == record.campaign_id
    finally:
        subscriptions.close()


async def _dead_letters(bootstrap: str, run_id: str, count: int, timeout_s: float) -> list[Any]:
    settings = load_settings(kafka={"bootstrap": bootstrap})
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        dlq = settings.kafka.dlq_topic
        partitions = [TopicPartition(dlq, p) for p in sorted(consumer.partitions_for_topic(dlq) or {0})]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        found: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while len(found) < count and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    headers = dict(record.headers or ())
                    if headers.get(SOURCE_TOPIC) == RUN_EVENTS.name.encode() and \
                            events_pb2.RunEvent.FromString(record.value).run_id == run_id:
                        found.append(record)
        return found
    finally:
        await consumer.stop()


def test_an_event_that_cannot_be_published_goes_to_the_dlq_with_its_origin(
    publishing_service: tuple[Any, dict[str, Any]], kafka_bootstrap: str, unique_name: str,
) -> None:
    service, pubsub = publishing_service
    run_id = f"{unique_name}-lost"
    settings = load_settings(pubsub=pubsub)
    publisher = pubsub_v1.PublisherClient()
    topic_path = publisher.topic_path(pubsub["project_id"], settings.pubsub.topics.run_events)
    service.start()
    # The topic vanishes after the service created it: every publish answers NOT_FOUND.
    publisher.delete_topic(request={"topic": topic_path}, timeout=30)
    asyncio.run(produce(kafka_bootstrap, [run_id], range(1)))
    records = asyncio.run(_dead_letters(kafka_bootstrap, run_id, 1, timeout_s=120))
    assert records, f"nothing dead-lettered:\n{service.log()}"
    headers = dict(records[0].headers)
    assert headers[SOURCE_PARTITION] == b"0"
    assert int(headers[SOURCE_OFFSET]) >= 0
    assert settings.pubsub.topics.run_events.encode() in headers[ERROR_MESSAGE]
    assert events_pb2.RunEvent.FromString(records[0].value).event_id == f"{run_id}-event-0"
    assert service.stop() == 0, service.log()
