"""The faust app: three agents fold episodes, learner stats and violations into changelogged tables.

Broker settings come from settings.kafka (no idempotence/transactions: the Tansu broker has none),
processing_guarantee at_least_once, tables changelogged on the same broker, data under
settings.storage.data_dir. Values are read raw and decoded here so that bad bytes and failing
handlers go to the DLQ (faust would ack and drop a message whose agent raises).

Counting semantics: faust commits offsets every commit_interval_s and on stop (SIGTERM drains and
commits). Each table value remembers the next source offset it applied, so a message redelivered
after a crash (offset not yet committed, changelog already written) is skipped: an episode is counted
once unless the process dies between processing it and its changelog write reaching the broker, in
which case it is processed again on restart — still once in the recovered state.

Co-partitioning: the runs table is keyed by run id (= the episodes' message key, checked), the
learner table by run id (the learner-metrics key), the violations table by "campaign id|run id"
(the violations key comes first), so every table key lives on the partition of its source messages
and recovers from the matching changelog partition. The service runs as one replica: gRPC and the
dashboard read every partition's table locally.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import faust
from aiokafka.structs import ConsumerRecord
from opentelemetry import trace

from gaelp.bus import EPISODES, LEARNER_METRICS, VIOLATIONS, BusProducer
from gaelp.bus.dlq import DeadLetterQueue
from gaelp.bus.topics import ASSESSMENTS
from gaelp.bus.tracing import process_span
from gaelp.config import GaelpSettings
from gaelp.v1 import events_pb2
from metrics.assessment import RunViolations, assess
from metrics.instruments import MetricsInstruments
from metrics.state import (
    CampaignViolations,
    LearnerState,
    RunState,
    apply_episode,
    apply_learner_stats,
    apply_violation,
)
from metrics.views import window_figures

logger = logging.getLogger(__name__)

Handler = Callable[[ConsumerRecord], Awaitable[None]]


def _record(message: Any) -> ConsumerRecord:
    """The faust message as the aiokafka record the bus's DLQ expects."""
    value = message.value
    key = message.key
    return ConsumerRecord(
        topic=message.topic, partition=message.partition, offset=message.offset,
        timestamp=int(message.timestamp * 1000), timestamp_type=message.timestamp_type,
        key=key, value=value, checksum=None,
        serialized_key_size=len(key) if key else -1, serialized_value_size=len(value) if value else -1,
        headers=list(message.headers or ()),
    )


def faust_app(settings: GaelpSettings) -> faust.App:
    kafka = settings.kafka
    metrics = settings.metrics
    datadir = Path(settings.storage.data_dir) / "metrics-faust"
    datadir.parent.mkdir(parents=True, exist_ok=True)
    return faust.App(
        metrics.group_id,
        broker=[f"kafka://{server}" for server in kafka.bootstrap.split(",")],
        broker_client_id=f"{kafka.client_id}-metrics",
        producer_acks=-1 if kafka.acks == "all" else int(kafka.acks),
        processing_guarantee="at_least_once",
        store="memory://",  # state is rebuilt from the changelog topics on start
        datadir=str(datadir),
        topic_partitions=kafka.partitions.get(EPISODES.name, 1),
        topic_replication_factor=kafka.replication_factor,
        broker_commit_interval=metrics.commit_interval_s,
        broker_session_timeout=kafka.session_timeout_ms / 1000,
        broker_heartbeat_interval=kafka.heartbeat_interval_ms / 1000,
        # Tansu holds a join for the whole rebalance timeout; one worker needs no long wait.
        broker_rebalance_timeout=3.0,
        broker_request_timeout=max(kafka.request_timeout_ms, kafka.session_timeout_ms + 5000) / 1000,
        producer_max_request_size=kafka.max_request_size,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
    )


class MetricsStreams:
    """The faust app, its tables and agents, and the reads gRPC and the dashboard make."""

    def __init__(
        self,
        settings: GaelpSettings,
        producer: BusProducer,
        instruments: MetricsInstruments,
        on_fatal: Callable[[BaseException], None],
    ) -> None:
        self.settings = settings
        self.producer = producer
        self.instruments = instruments
        self.on_fatal = on_fatal
        self.dlq = DeadLetterQueue(producer, settings.kafka.dlq_topic, settings.metrics.group_id)
        self._tracer = trace.get_tracer("gaelp.metrics")
        partitions = settings.kafka.partitions
        self.app = faust_app(settings)
        json_schema = faust.Schema(key_type=str, key_serializer="json", value_serializer="json")
        self.runs = self.app.Table(
            "runs", partitions=partitions.get(EPISODES.name, 1), schema=json_schema,
        )
        self.learners = self.app.Table(
            "learners", partitions=partitions.get(LEARNER_METRICS.name, 1), schema=json_schema,
        )
        self.violations = self.app.Table(
            "violations", partitions=partitions.get(VIOLATIONS.name, 1), schema=json_schema,
        )
        for topic, handler in (
            (EPISODES, self._apply_episode),
            (LEARNER_METRICS, self._apply_learner_stats),
            (VIOLATIONS, self._apply_violation),
        ):
            source = self.app.topic(topic.name, key_serializer="raw", value_serializer="raw")
            self.app.agent(source, name=f"metrics.{topic.name}")(self._agent(handler))

    async def start(self) -> None:
        await self.app.start()
        # Answer (and report SERVING) only once the tables are back from their changelogs: before
        # that, summaries and assessments would count only part of the run.
        await asyncio.wait_for(self.app.tables.recovery.completed.wait(),
                               timeout=self.settings.metrics.recovery_timeout_s)

    async def stop(self) -> None:
        """Finish the events in flight, flush the changelogs and commit the offsets."""
        await self.app.stop()

    def _agent(self, handler: Handler) -> Callable[[faust.StreamT], Awaitable[None]]:
        async def consume(stream: faust.StreamT) -> None:
            events: AsyncIterator[faust.EventT] = stream.events()
            async for event in events:
                await self._process(event.message, handler)

        return consume

    async def _process(self, message: Any, handler: Handler) -> None:
        record = _record(message)
        with process_span(self._tracer, record.topic, record.partition, record.offset,
                          record.headers) as span:
            try:
                await handler(record)
            except Exception as error:
                span.record_exception(error)
                try:
                    await self.dlq.send(record, error)
                except Exception as dlq_error:
                    # Without the DLQ a message would be acked and lost: stop instead.
                    self.on_fatal(dlq_error)
                    raise
                self.instruments.dead_lettered.add(1, {"topic": record.topic})

    # --- reads -------------------------------------------------------------------------------

    def run_state(self, run_id: str) -> RunState | None:
        data = self.runs.get(run_id)
        return RunState.model_validate(data) if data is not None else None

    def run_ids(self) -> list[str]:
        return [str(key) for key in self.runs.keys()]

    def learner_state(self, run_id: str) -> LearnerState | None:
        data = self.learners.get(run_id)
        return LearnerState.model_validate(data) if data is not None else None

    def campaign_violations(self, run_id: str) -> list[CampaignViolations]:
        return [
            CampaignViolations.model_validate(value)
            for key, value in list(self.violations.items())
            if str(key).rsplit("|", 1)[-1] == run_id
        ]

    def run_violations(self, run_id: str) -> dict[int, RunViolations]:
        totals: dict[int, RunViolations] = {}
        for campaign in self.campaign_violations(run_id):
            for phase, count in campaign.count_by_phase.items():
                before = totals.get(phase, RunViolations())
                totals[phase] = RunViolations(
                    count=before.count + count,
                    critical=before.critical + campaign.critical_by_phase.get(phase, 0),
                )
        return totals

    def assessment(self, run: RunState, phase: int) -> events_pb2.GraduationAssessment:
        return assess(run, phase, self.run_violations(run.run_id).get(phase, RunViolations()),
                      self.settings.metrics)

    # --- handlers (inside the event's process span) -------------------------------------------

    async def _apply_episode(self, record: ConsumerRecord) -> None:
        episode = EPISODES.decode(record.value)
        if not episode.run_id:
            raise ValueError("EpisodeSummary without run_id")
        if record.key is not None and record.key.decode(errors="replace") != episode.run_id:
            raise ValueError(f"episodes must be keyed by run id: key {record.key!r}, run {episode.run_id!r}")
        run = self.run_state(episode.run_id) or RunState(run_id=episode.run_id)
        if run.already_applied(record.partition, record.offset):
            logger.info("skipping redelivered episode", extra={"offset": record.offset})
            return
        alerts = apply_episode(run, episode, record.partition, record.offset, self.settings.metrics)
        self.runs[episode.run_id] = run.model_dump(mode="json")
        self.instruments.record_episode(episode)
        for alert in alerts:
            self.instruments.record_alert(alert.phase, alert.metric)
            logger.warning("anomaly: %s", alert.message, extra={"run_id": alert.run_id})
        await self._publish_assessment(run, episode.phase)

    async def _apply_learner_stats(self, record: ConsumerRecord) -> None:
        stats = LEARNER_METRICS.decode(record.value)
        if not stats.run_id:
            raise ValueError("LearnerStats without run_id")
        data = self.learners.get(stats.run_id)
        state = LearnerState.model_validate(data) if data is not None else LearnerState(run_id=stats.run_id)
        if record.offset < state.next_offsets.get(record.partition, 0):
            return
        apply_learner_stats(state, stats, record.partition, record.offset,
                            self.settings.metrics.learner_history)
        self.learners[stats.run_id] = state.model_dump(mode="json")
        self.instruments.record_learner(stats)

    async def _apply_violation(self, record: ConsumerRecord) -> None:
        violation = VIOLATIONS.decode(record.value)
        campaign = record.key.decode(errors="replace") if record.key else violation.campaign_id
        key = f"{campaign}|{violation.run_id}"
        data = self.violations.get(key)
        state = (CampaignViolations.model_validate(data) if data is not None
                 else CampaignViolations(campaign_id=campaign, run_id=violation.run_id))
        if record.offset < state.next_offsets.get(record.partition, 0):
            return
        apply_violation(state, violation, record.partition, record.offset,
                        self.settings.metrics.violation_history)
        self.violations[key] = state.model_dump(mode="json")
        self.instruments.record_violation(violation)
        run = self.run_state(violation.run_id)
        if run is not None and violation.phase in run.phases:
            await self._publish_assessment(run, violation.phase)

    async def _publish_assessment(self, run: RunState, phase: int) -> None:
        assessment = self.assessment(run, phase)
        self.instruments.record_window(run.run_id, phase, {
            **window_figures(run.phases[phase]), "ready": float(assessment.ready_to_graduate),
        })
        # Each assessment supersedes the last: no need to wait for the broker on every episode.
        await self.producer.publish_in_background(ASSESSMENTS, run.run_id, assessment)
