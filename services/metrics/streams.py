"""The faust app: three agents fold episodes, learner stats and violations into changelogged tables.

Broker settings come from settings.kafka (no idempotence/transactions: the Tansu broker has none;
the consumer's fetch wait through metrics.kafka_transport),
processing_guarantee at_least_once, tables changelogged on the same broker, data under
settings.storage.data_dir. Values are read raw and decoded here so that bad bytes and failing
handlers go to the DLQ (faust would ack and drop a message whose agent raises).

Every message is decoded and validated in full (gaelp.bus.validation, plus the key rules below)
before it touches any state: one that fails goes to the DLQ alone, and the rest of its batch is
processed. Agents take events in batches (stream.take_events, metrics.batch_max_events within
metrics.batch_within_s). The parsed state of each run lives in memory while the process runs; a
batch's episodes are grouped by run and folded in one pass (apply_episodes: running sums, bounded
windows), and the table value of every run the batch changed is written to the table and its
changelog once, at the end of the batch. Each run the batch changed gets one GraduationAssessment
per phase it touched (its figures after the run's last episode of the batch), published under the
CONSUMER span "process gaelp.episodes.v1" of that last episode. Episodes get that span, child of
their producer span (traces follow each episode), open over their run's fold of the batch, up to
metrics.traced_episodes_per_s (SpanBudget): exporting a span costs far more than folding an
episode, so while a backlog is caught up only the latest episodes of each run's batch get one.

Counting semantics: a batch's events are acked only after its table writes were handed to the
changelog producer, and faust flushes that producer before it commits offsets (every
commit_interval_s, on a rebalance and on stop), so a committed offset always has its state change
in the changelog. Each table value remembers the next source offset it applied, so a message
redelivered after a crash (offset not yet committed, changelog already written) is skipped, and so
is one that shares a batch with its original (RunState.unapplied); a run whose episodes were all
skipped publishes no assessment. An episode is counted once, and an assessment is published again
only if the process died before the batch's changelog write reached the broker (then the batch is
folded again on restart, still once in the recovered state). The consumer's delivery is not taken
on trust: before a batch is folded, metrics.delivery puts each partition's records in offset order
from the table's next offset on, drops repeats and reads any record the consumer skipped from the
broker, so no record is counted out of order or lost to a dropped delivery.

Rebalances and stops: faust waits for the batches in flight to be acked (after their flush),
flushes the changelog producer and commits before it revokes partitions or stops, so a rebalance
never splits a batch: its state changes, its assessments and its offsets go together. On stop the
service commits once more after the streams are done (_commit_after_streams: faust's own last
commit is skipped while a periodic one is in flight, which may predate the last acks). Parsed
values are checked against the table bytes they came from (LiveTable), so state recovered from a
changelog after a rebalance is never shadowed by an older parse (one made by a read while the
partition was recovering or on standby would otherwise go on and drop the episodes in between).

Co-partitioning: the runs table is keyed by run id (= the episodes' message key, checked), the
learner table by run id (the learner-metrics key), the violations table by "campaign id|run id"
(the violations key comes first), so every table key lives on the partition of its source messages
and recovers from the matching changelog partition (writes name that partition explicitly);
start() refuses topics whose partition counts differ from their table's. A crash inside faust
stops the service (on_fatal). The service runs as one replica: gRPC and the dashboard read every
partition's state locally.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, cast

import faust
from aiokafka.structs import ConsumerRecord
from faust.transport.consumer import Consumer
from mode.types.signals import BaseSignalT
from opentelemetry import trace

from gaelp.bus import EPISODES, LEARNER_METRICS, VIOLATIONS, BusProducer
from gaelp.bus.admin import check_partitions, partition_counts
from gaelp.bus.dlq import DeadLetterQueue
from gaelp.bus.topics import ASSESSMENTS, Topic
from gaelp.bus.tracing import extract_context, message_attributes, process_span
from gaelp.bus.validation import InvalidMessage, validate
from gaelp.config import GaelpSettings
from gaelp.v1 import events_pb2
from metrics import kafka_transport
from metrics.assessment import RunViolations, assess, entry_violations
from metrics.delivery import in_order
from metrics.instruments import MetricsInstruments
from metrics.live_table import LiveTable
from metrics.recovery import CatchingUpTableManager, ChangelogLog, catch_up_within
from metrics.state import (
    Alert,
    CampaignViolations,
    LearnerState,
    RunState,
    apply_episode,
    apply_episodes,
    apply_learner_stats,
    apply_violation,
    forget_before,
)
from metrics.views import window_figures

logger = logging.getLogger(__name__)

AlertHook = Callable[[Alert], Awaitable[None] | None]
"""Called once per alert, inside the run's batch span; must not block (enqueue and return)."""
Folded = list[tuple[ConsumerRecord, events_pb2.EpisodeSummary]]


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


def _decoded(topic: Topic[Any], record: ConsumerRecord) -> Any:
    """Decode and validate one record, its key included; raise before any state changes.

    Keys decide the table partition a value lives on: episodes and learner stats must be keyed by
    their run id, violations by their campaign id (or any key for a run-wide one).
    """
    message = topic.decode(record.value)
    validate(topic.name, message)
    key = record.key.decode(errors="replace") if record.key is not None else None
    if topic.name == VIOLATIONS.name:
        expected: str = message.campaign_id or key or ""
    else:
        expected = message.run_id
    if key is not None and key != expected:
        raise InvalidMessage(f"{topic.name} must be keyed by {expected[:80]!r}, not {key[:80]!r}")
    return message


class SpanBudget:
    """Episode spans a second as a token bucket that holds at most one second's worth."""

    def __init__(self, per_s: float) -> None:
        self.per_s = per_s
        self.tokens = per_s
        self.at = time.monotonic()

    def take(self, wanted: int) -> int:
        """How many of `wanted` spans to open now (they are taken from the bucket)."""
        now = time.monotonic()
        self.tokens = min(self.per_s, self.tokens + (now - self.at) * self.per_s)
        self.at = now
        granted = min(wanted, int(self.tokens))
        self.tokens -= granted
        return granted


def faust_app(settings: GaelpSettings) -> faust.App:
    kafka = settings.kafka
    metrics = settings.metrics
    datadir = Path(settings.storage.data_dir) / "metrics-faust"
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        metrics.group_id,
        TableManager=CatchingUpTableManager,
        recovery_consistency_check=False,  # CatchingUpRecovery checks, once lagging ends caught up
        broker=[f"{kafka_transport.SCHEME}://{server}?{kafka_transport.FETCH_MAX_WAIT_PARAMETER}="
                f"{kafka.fetch_max_wait_ms}" for server in kafka.bootstrap.split(",")],
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
    catch_up_within(app, kafka, metrics.highwater_catch_up_s)
    return app


class MetricsStreams:
    """The faust app, its tables and agents, and the reads gRPC and the dashboard make.

    on_alert: the hooks every anomaly alert is handed to (see AlertHook), after it is counted and
    logged; attach a publisher with streams.on_alert.append(hook).
    """

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
        self.on_alert: list[AlertHook] = []
        self._span_budget = SpanBudget(settings.metrics.traced_episodes_per_s)
        # Per violation batch: the (run, phase) assessments it changed.
        self._violated: dict[tuple[str, int], None] = {}
        self.dlq = DeadLetterQueue(producer, settings.kafka.dlq_topic, settings.metrics.group_id)
        self._tracer = trace.get_tracer("gaelp.metrics")
        self._read_log = ChangelogLog(settings.kafka, settings.kafka.request_timeout_ms / 1000).read
        partitions = settings.kafka.partitions
        self.app = faust_app(settings)
        # Keys as JSON strings, values as the JSON bytes LiveTable writes (value_type bytes = raw, in
        # the writes and in the recovery from the changelog alike).
        schema: faust.Schema = faust.Schema(key_type=str, value_type=bytes, key_serializer="json",
                                            value_serializer="raw")
        self.runs = self.app.Table(
            "runs", partitions=partitions.get(EPISODES.name, 1), key_type=str, value_type=bytes,
            schema=schema,
        )
        self.learners = self.app.Table(
            "learners", partitions=partitions.get(LEARNER_METRICS.name, 1), key_type=str, value_type=bytes,
            schema=schema,
        )
        self.violations = self.app.Table(
            "violations", partitions=partitions.get(VIOLATIONS.name, 1), key_type=str, value_type=bytes,
            schema=schema,
        )
        self._runs = LiveTable(self.runs, RunState)
        self._learners = LiveTable(self.learners, LearnerState)
        self._violations = LiveTable(self.violations, CampaignViolations)
        self._live_tables = (self._runs, self._learners, self._violations)
        self._crash_watch: asyncio.Task[None] | None = None
        self.app.on_before_shutdown.connect(self._commit_after_streams)
        for topic, handler, live in (
            (EPISODES, self._episodes, self._runs),
            (LEARNER_METRICS, self._learner_stats, self._learners),
            (VIOLATIONS, self._violation_batch, self._violations),
        ):
            source = self.app.topic(topic.name, key_serializer="raw", value_serializer="raw")
            self.app.agent(source, name=f"metrics.{topic.name}")(self._agent(handler, live))

    async def start(self) -> None:
        await self._check_co_partitioning()
        await self.app.start()
        self._crash_watch = asyncio.create_task(self._watch_for_crash())
        # Answer (and report SERVING) only once the tables are back from their changelogs: before
        # that, summaries and assessments would count only part of the run.
        await asyncio.wait_for(self.app.tables.recovery.completed.wait(),  # type: ignore[attr-defined]  # not in faust's stub
                               timeout=self.settings.metrics.recovery_timeout_s)

    async def stop(self) -> None:
        """Finish the events in flight, flush the changelogs and commit the offsets."""
        if self._crash_watch is not None:
            self._crash_watch.cancel()
        await self.app.stop()

    async def _commit_after_streams(self, sender: Any, /, *_: Any, signal: BaseSignalT[Any],
                                    **__: Any) -> None:
        """Commit once more once the streams are done (faust sends this after waiting for them).
        faust's own last commit returns at once when a periodic commit is in flight, and that commit
        may have taken its offsets before the last batch was acked: the stop then committed nothing
        of that batch (seen under load), and a restart would fold it again only to skip it."""
        if not self.app.started:
            return
        consumer = cast(Consumer, self.app.consumer)
        while await consumer.maybe_wait_for_commit_to_finish():
            pass  # a commit was in flight: commit after it, with every ack made since
        await consumer.commit()

    async def _check_co_partitioning(self) -> None:
        """Every table partition is written to the changelog partition of its source messages, so a
        source topic and its table's changelog must have the table's partition count: with one more
        (a topic the broker auto-created) faust's producer would crash on the first write there."""
        expected: dict[str, int] = {}
        for source, table in ((EPISODES, self.runs), (LEARNER_METRICS, self.learners),
                              (VIOLATIONS, self.violations)):
            partitions = table.partitions or 1
            expected[source.name] = partitions
            expected[table.changelog_topic.get_topic_name()] = partitions
        check_partitions(await partition_counts(self.settings.kafka, expected), expected)

    async def _watch_for_crash(self) -> None:
        """A crashed faust service (its producer, fetcher or an agent) stops the whole service: faust
        without its worker would otherwise go on answering reads while nothing is counted."""
        await self.app.wait_until_stopped()
        if self.app.crashed:
            self.on_fatal(self.app.crash_reason or RuntimeError("the faust app crashed"))

    def _agent(
        self, handler: Callable[[list[ConsumerRecord]], Awaitable[None]], live: LiveTable[Any]
    ) -> Callable[[faust.StreamT], Awaitable[None]]:
        metrics = self.settings.metrics

        async def consume(stream: faust.StreamT) -> None:
            async for events in stream.take_events(  # type: ignore[attr-defined]  # not in faust's stub
                metrics.batch_max_events, within=metrics.batch_within_s
            ):
                # take_events acks the events when the loop asks for the next batch: after the flush.
                await handler(await in_order([_record(event.message) for event in events], live,
                                             self._read_log))
                for table in self._live_tables:
                    table.flush()

        return consume

    async def _dead_letter(self, record: ConsumerRecord, error: BaseException) -> None:
        try:
            await self.dlq.send(record, error)
        except Exception as dlq_error:
            # Without the DLQ a message would be acked and lost: stop instead.
            self.on_fatal(dlq_error)
            raise
        self.instruments.dead_lettered.add(1, {"topic": record.topic})

    async def _each(
        self, records: Sequence[ConsumerRecord], topic: Topic[Any],
        fold: Callable[[ConsumerRecord, Any], Awaitable[None]],
    ) -> None:
        """Validate each record, then fold it, inside its process span; failures go to the DLQ alone."""
        for record in records:
            with process_span(self._tracer, record.topic, record.partition, record.offset,
                              record.headers, consumer_group=self.settings.metrics.group_id,
                              key=record.key) as span:
                try:
                    message = _decoded(topic, record)
                except Exception as error:
                    span.record_exception(error)
                    await self._dead_letter(record, error)
                    continue
                try:
                    await fold(record, message)
                except Exception as error:
                    # Validation makes this a bug, not bad input.
                    logger.exception("processing a valid %s message failed", topic.name)
                    span.record_exception(error)
                    await self._dead_letter(record, error)

    # --- reads -------------------------------------------------------------------------------

    def run_state(self, run_id: str) -> RunState | None:
        return self._runs.get(run_id)

    def run_ids(self) -> list[str]:
        return self._runs.keys()

    def learner_ids(self) -> list[str]:
        return self._learners.keys()

    def learner_state(self, run_id: str) -> LearnerState | None:
        return self._learners.get(run_id)

    def campaign_violations(self, run_id: str) -> list[CampaignViolations]:
        found = []
        for key in self._violations.keys():
            if key.rsplit("|", 1)[-1] == run_id:
                state = self._violations.get(key)
                if state is not None:
                    found.append(state)
        return found

    def run_violations(self, run_id: str) -> dict[int, RunViolations]:
        """Per phase, the violations of the run's current entry into it (those since it began)."""
        campaigns = self.campaign_violations(run_id)
        run = self._runs.get(run_id)
        phases = {phase for campaign in campaigns for phase in campaign.count_by_phase}
        return {phase: entry_violations(campaigns, phase, run.phases[phase].entered_at
                                        if run is not None and phase in run.phases else 0.0)
                for phase in phases}

    def assessment(self, run: RunState, phase: int) -> events_pb2.GraduationAssessment:
        return assess(run, phase, self.run_violations(run.run_id).get(phase, RunViolations()),
                      self.settings.metrics)

    # --- episodes ----------------------------------------------------------------------------

    async def _episodes(self, records: list[ConsumerRecord]) -> None:
        by_run: dict[str, Folded] = {}
        for record in records:
            try:
                episode = _decoded(EPISODES, record)
            except Exception as error:
                with process_span(self._tracer, record.topic, record.partition, record.offset,
                                  record.headers, consumer_group=self.settings.metrics.group_id,
                                  key=record.key) as span:
                    span.record_exception(error)
                    await self._dead_letter(record, error)
                continue
            by_run.setdefault(episode.run_id, []).append((record, episode))
        for run_id, folded in by_run.items():
            await self._fold_run(run_id, folded)

    def _episode_span(self, record: ConsumerRecord, episode: events_pb2.EpisodeSummary) -> trace.Span:
        """The episode's CONSUMER span (as gaelp.bus.tracing.process_span names and attributes it),
        started but not current: the run's fold of the batch covers all of its episodes at once."""
        return self._tracer.start_span(
            f"process {EPISODES.name}",
            context=extract_context(record.headers),
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "messaging.destination.name": EPISODES.name,
                "messaging.destination.partition.id": str(record.partition),
                "messaging.kafka.message.offset": record.offset,
                **message_attributes(episode),
                "messaging.consumer.group.name": self.settings.metrics.group_id,
                "messaging.kafka.message.key": episode.run_id,
            },
        )

    async def _fold_run(self, run_id: str, folded: Folded) -> None:
        """Fold one run's episodes of the batch, then its alerts, gauges and one assessment per phase."""
        run = self._runs.get(run_id) or RunState(run_id=run_id)
        fresh = [folded[index] for index in run.unapplied([(record.partition, record.offset)
                                                           for record, _ in folded])]
        if len(fresh) < len(folded):
            logger.info("skipping redelivered episodes",
                        extra={"run_id": run_id, "count": len(folded) - len(fresh)})
        if not fresh:
            return
        # The latest episodes get spans; the last always does: the run's alerts and assessments go
        # out under it.
        untraced = len(fresh) - max(1, self._span_budget.take(len(fresh)))
        spans = [None if index < untraced else self._episode_span(record, episode)
                 for index, (record, episode) in enumerate(fresh)]
        last = spans[-1]
        assert last is not None
        try:
            with trace.use_span(last):
                await self._fold_fresh(run_id, run, fresh, spans)
        finally:
            for span in spans:
                if span is not None:
                    span.end()

    async def _fold_fresh(self, run_id: str, run: RunState, fresh: Folded,
                          spans: list[trace.Span | None]) -> None:
        try:
            alerts = apply_episodes(run, [(record.partition, record.offset, episode)
                                          for record, episode in fresh], self.settings.metrics)
        except Exception:
            # Validation makes this a bug, not bad input: find the episodes that fail alone.
            logger.exception("folding a batch of valid episodes failed", extra={"run_id": run_id})
            run, alerts = await self._fold_one_by_one(run_id, fresh, spans)
        self._runs.put(run_id, run, fresh[-1][0].partition)
        self.instruments.record_episodes([episode for _, episode in fresh])
        for alert in alerts:
            await self._emit_alert(alert)
        for phase in dict.fromkeys(episode.phase for _, episode in fresh):
            if phase not in run.phases:
                continue
            assessment = self.assessment(run, phase)
            self.instruments.record_window(run_id, phase, {
                **window_figures(run.phases[phase]), "ready": float(assessment.ready_to_graduate),
            })
            # Each assessment supersedes the last: no need to wait for the broker.
            await self.producer.publish_in_background(ASSESSMENTS, run_id, assessment)

    async def _fold_one_by_one(self, run_id: str, fresh: Folded, spans: list[trace.Span | None]
                               ) -> tuple[RunState, list[Alert]]:
        """The run as of the last flush plus each episode that folds; those that raise go to the DLQ."""
        self._runs.forget(run_id)
        run = self._runs.get(run_id) or RunState(run_id=run_id)
        alerts: list[Alert] = []
        for (record, episode), span in zip(fresh, spans, strict=True):
            before = run.model_copy(deep=True)
            try:
                alerts += apply_episode(run, episode, record.partition, record.offset, self.settings.metrics)
            except Exception as error:
                (span or trace.get_current_span()).record_exception(error)
                run = before
                await self._dead_letter(record, error)
        return run, alerts

    async def _emit_alert(self, alert: Alert) -> None:
        """The one place an anomaly alert leaves the service: counter, log, then every hook."""
        self.instruments.record_alert(alert.phase, alert.metric)
        logger.warning("anomaly: %s", alert.message, extra={"run_id": alert.run_id})
        for hook in list(self.on_alert):
            try:
                result = hook(alert)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("an alert hook failed", extra={"run_id": alert.run_id})

    # --- learner stats and violations --------------------------------------------------------

    async def _learner_stats(self, records: list[ConsumerRecord]) -> None:
        await self._each(records, LEARNER_METRICS, self._fold_learner_stats)

    async def _fold_learner_stats(self, record: ConsumerRecord, stats: events_pb2.LearnerStats) -> None:
        state = self._learners.get(stats.run_id) or LearnerState(run_id=stats.run_id)
        if record.offset < state.next_offsets.get(record.partition, 0):
            return
        apply_learner_stats(state, stats, record.partition, record.offset,
                            self.settings.metrics.learner_history)
        self._learners.put(stats.run_id, state, record.partition)
        self.instruments.record_learner(stats)

    async def _violation_batch(self, records: list[ConsumerRecord]) -> None:
        self._violated = {}
        await self._each(records, VIOLATIONS, self._fold_violation)
        for run_id, phase in self._violated:
            run = self._runs.get(run_id)
            if run is not None and phase in run.phases:
                await self.producer.publish_in_background(ASSESSMENTS, run_id, self.assessment(run, phase))

    async def _fold_violation(self, record: ConsumerRecord, violation: events_pb2.Violation) -> None:
        campaign = record.key.decode(errors="replace") if record.key else violation.campaign_id
        key = f"{campaign}|{violation.run_id}"
        state = (self._violations.get(key)
                 or CampaignViolations(campaign_id=campaign, run_id=violation.run_id))
        if record.offset < state.next_offsets.get(record.partition, 0):
            return
        apply_violation(state, violation, record.partition, record.offset,
                        self.settings.metrics.violation_history)
        run = self._runs.get(violation.run_id)
        if run is not None and violation.phase in run.phases:
            forget_before(state, violation.phase, run.phases[violation.phase].entered_at)
        self._violations.put(key, state, record.partition)
        self.instruments.record_violation(violation)
        # One assessment per run and phase per batch, once all of the batch's violations count.
        self._violated[(violation.run_id, violation.phase)] = None
