"""Operator events from the Kafka topics (and the anomaly detectors) to Pub/Sub.

Sources: gaelp.run-events.v1 (phase transitions, approval requests), gaelp.violations.v1,
gaelp.assessments.v1 and, with publish_episodes, gaelp.episodes.v1, read by a BusConsumer in its own
consumer group; anomaly alerts come from the metrics streams' alert hook. Each Pub/Sub message
carries the source protobuf bytes, ordering key = run id, and attributes: event_type, event_id,
message_type, run_id, phase and the ids of the event (violation_id, approval_id, episode_id, ...).

event_id is deterministic from the source, so a message redelivered after a restart carries the same
id and subscribers de-duplicate on it: the message's own id (RunEvent.event_id, violation_id,
episode_id) or else its Kafka coordinates "topic:partition:offset"; an alert's id names the episode
that raised it and the metric. Offsets are committed only after their batch is published (or
dead-lettered): delivery is at least once, ordered per run. Alerts wait in an in-process queue
(the hook must not hold up the episode): one raised just before a crash may not be published.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiokafka.structs import ConsumerRecord

from gaelp.bus import BusConsumer, BusProducer
from gaelp.bus.consumer import Delivery
from gaelp.bus.dlq import DeadLetterQueue
from gaelp.bus.topics import ASSESSMENTS, EPISODES, RUN_EVENTS, VIOLATIONS, Topic
from gaelp.config import GaelpSettings
from gaelp.v1 import common_pb2, events_pb2, metrics_pb2
from metrics.pubsub_publisher import PubSubMessage, PubSubPublisher
from metrics.state import Alert

logger = logging.getLogger(__name__)

# Where a dead-lettered alert came from: alerts have no Kafka record of their own.
ALERT_ORIGIN = "metrics.anomaly-alerts"


def _coordinates(record: ConsumerRecord) -> str:
    return f"{record.topic}:{record.partition}:{record.offset}"


def _phase(phase: int) -> str:
    return common_pb2.Phase.Name(phase)  # type: ignore[arg-type]


class OperatorEvents:
    """Turns source messages into Pub/Sub messages and publishes them; owns the consumer."""

    def __init__(self, settings: GaelpSettings, producer: BusProducer,
                 on_fatal: Callable[[BaseException], None],
                 publisher: PubSubPublisher | None = None) -> None:
        self.settings = settings
        self.pubsub = settings.pubsub
        self.on_fatal = on_fatal
        self.publisher = publisher or PubSubPublisher(settings.pubsub)
        sources: list[Topic[Any]] = [RUN_EVENTS, VIOLATIONS, ASSESSMENTS]
        if self.pubsub.publish_episodes:
            sources.append(EPISODES)
        self.consumer = BusConsumer(settings.kafka, sources, self.pubsub.group_id, producer,
                                    client_id=f"{settings.kafka.client_id}-operator-events")
        self.dlq = DeadLetterQueue(producer, settings.kafka.dlq_topic, self.pubsub.group_id)
        self._verdicts: dict[tuple[str, int], tuple[bool, bool, str]] = {}
        self._alerts: asyncio.Queue[Alert] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self.published = 0

    async def start(self) -> None:
        if self.pubsub.create_topics:
            topics = self.pubsub.topics
            await self.publisher.ensure_topics(
                [topics.alerts, topics.violations, topics.assessments, topics.run_events]
                + ([topics.episodes] if self.pubsub.publish_episodes else []))
        await self.consumer.start()
        self._tasks = [
            asyncio.create_task(self.consumer.run_batches(self._publish_batch), name="operator-events"),
            asyncio.create_task(self._publish_alerts(), name="operator-alerts"),
        ]
        for task in self._tasks:
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.on_fatal(task.exception())  # type: ignore[arg-type]

    async def stop(self) -> None:
        """Publish the batch in flight and the queued alerts, commit, leave the group, flush."""
        consumer_task, alert_task = self._tasks or (None, None)
        if consumer_task is not None:
            await self.consumer.finish(consumer_task, timeout_s=self.pubsub.attempt_timeout_s)
        if alert_task is not None:
            try:
                await asyncio.wait_for(self._alerts.join(), timeout=self.pubsub.attempt_timeout_s)
            except TimeoutError:
                logger.warning("alerts still queued at stop", extra={"alerts": self._alerts.qsize()})
            alert_task.cancel()
            await asyncio.gather(alert_task, return_exceptions=True)
        await self.consumer.stop()
        await asyncio.to_thread(self.publisher.stop)

    # --- alerts (from the streams' hook) ---------------------------------------------------------

    def enqueue_alert(self, alert: Alert) -> None:
        """The streams' alert hook: must not hold up the episode, so the alert waits in a queue."""
        self._alerts.put_nowait(alert)

    async def _publish_alerts(self) -> None:
        while True:
            batch = [await self._alerts.get()]
            while not self._alerts.empty():
                batch.append(self._alerts.get_nowait())
            try:
                await self._publish_alert_batch(batch)
            finally:
                for _ in batch:
                    self._alerts.task_done()

    async def _publish_alert_batch(self, alerts: list[Alert]) -> None:
        """Publish anomaly alerts; those failing after the retries go to the DLQ with their origin."""
        messages = [self.alert_message(alert) for alert in alerts]
        failures = await self.publisher.publish(messages)
        for failed, error in failures:
            record = ConsumerRecord(
                topic=ALERT_ORIGIN, partition=0, offset=int(failed.attributes["episode_index"]),
                timestamp=0, timestamp_type=0, key=failed.ordering_key.encode(), value=failed.data,
                checksum=None, serialized_key_size=-1, serialized_value_size=len(failed.data),
                headers=[("event_id", failed.attributes["event_id"].encode())],
            )
            await self.dlq.send(record, error)
        self.published += len(messages) - len(failures)

    def alert_message(self, alert: Alert) -> PubSubMessage:
        message = metrics_pb2.Alert(
            run_id=alert.run_id, phase=alert.phase,  # type: ignore[arg-type]
            metric=alert.metric, value=alert.value, expected=alert.expected, z_score=alert.z_score,
            episode_index=alert.episode_index, message=alert.message,
        )
        # The episode that raised it and the metric: a re-raise after a restart carries the same id.
        event_id = f"alert:{alert.run_id}:{_phase(alert.phase)}:{alert.episode_index}:{alert.metric}"
        return PubSubMessage(
            self.pubsub.topics.alerts, message.SerializeToString(), alert.run_id,
            {"event_type": "anomaly_alert", "event_id": event_id,
             "message_type": message.DESCRIPTOR.full_name,
             "run_id": alert.run_id, "phase": _phase(alert.phase), "metric": alert.metric,
             "episode_index": str(alert.episode_index)},
        )

    # --- Kafka sources ---------------------------------------------------------------------------

    async def _publish_batch(self, deliveries: list[Delivery[Any]]) -> None:
        pairs: list[tuple[Delivery[Any], PubSubMessage]] = []
        for delivery in deliveries:
            try:
                message = self.to_pubsub(delivery)
            except Exception as error:
                await self.consumer.dead_letter(delivery.record, error)
                continue
            if message is not None:
                pairs.append((delivery, message))
        by_message = {id(message): delivery for delivery, message in pairs}
        failures = await self.publisher.publish([message for _, message in pairs])
        for message, failure in failures:
            await self.consumer.dead_letter(by_message[id(message)].record, failure)
        self.published += len(pairs) - len(failures)

    def to_pubsub(self, delivery: Delivery[Any]) -> PubSubMessage | None:
        """The Pub/Sub message for one source message; None for an assessment whose verdict held."""
        record = delivery.record
        value = delivery.value
        attributes = {"message_type": value.DESCRIPTOR.full_name, "source": _coordinates(record)}
        topics = self.pubsub.topics
        if isinstance(value, events_pb2.RunEvent):
            kind = value.WhichOneof("event")
            if kind is None:
                raise ValueError("RunEvent without an event")
            attributes |= {"event_type": kind, "event_id": value.event_id or _coordinates(record)}
            if kind == "approval_requested":
                request = value.approval_requested
                attributes |= {"approval_id": request.approval_id, "approval_kind": request.kind,
                               "campaign_id": request.campaign_id}
            else:
                transition = value.phase_transition
                attributes |= {"from_phase": _phase(transition.from_phase),
                               "to_phase": _phase(transition.to_phase)}
            return self._message(topics.run_events, value.run_id, record, attributes)
        if isinstance(value, events_pb2.Violation):
            attributes |= {"event_type": "violation", "event_id": value.violation_id or _coordinates(record),
                           "violation_id": value.violation_id, "campaign_id": value.campaign_id,
                           "phase": _phase(value.phase), "rule": value.rule,
                           "severity": events_pb2.Severity.Name(value.severity)}
            return self._message(topics.violations, value.run_id, record, attributes)
        if isinstance(value, events_pb2.GraduationAssessment):
            verdict = (value.ready_to_graduate, value.demote, value.reason)
            if self.pubsub.assessment_changes_only:
                if self._verdicts.get((value.run_id, value.phase)) == verdict:
                    return None
                self._verdicts[(value.run_id, value.phase)] = verdict
            attributes |= {"event_type": "graduation_assessment", "event_id": _coordinates(record),
                           "phase": _phase(value.phase),
                           "ready_to_graduate": str(value.ready_to_graduate).lower(),
                           "demote": str(value.demote).lower()}
            return self._message(topics.assessments, value.run_id, record, attributes)
        if isinstance(value, events_pb2.EpisodeSummary):
            attributes |= {"event_type": "episode_summary",
                           "event_id": value.episode_id or _coordinates(record),
                           "episode_id": value.episode_id, "phase": _phase(value.phase), "task": value.task}
            return self._message(topics.episodes, value.run_id, record, attributes)
        raise TypeError(f"no operator event for {type(value).__name__}")

    @staticmethod
    def _message(
        topic: str, run_id: str, record: ConsumerRecord, attributes: dict[str, str]
    ) -> PubSubMessage:
        if not run_id:
            raise ValueError(f"{record.topic}: message without run_id")
        return PubSubMessage(topic, record.value, run_id, {**attributes, "run_id": run_id})
