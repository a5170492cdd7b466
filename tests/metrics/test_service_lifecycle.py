"""The service as a process: DLQ for bad bytes, trace links, SIGTERM commits offsets, restart keeps counts."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from gaelp.bus import EPISODES, BusProducer
from gaelp.bus import dlq as dlq_headers
from gaelp.config import load_settings
from gaelp.v1 import common_pb2, events_pb2, metrics_pb2


def episode(run_id: str, index: int) -> events_pb2.EpisodeSummary:
    return events_pb2.EpisodeSummary(
        run_id=run_id, episode_id=f"{run_id}-{index}", phase=common_pb2.PHASE_SIMULATION, task="basic",
        normalized_reward=0.5, success=True, roas=2.0, spend=5.0, revenue=10.0, budget=10.0,
    )


def wait_for_episodes(service: Any, run_id: str, expected: int, timeout_s: float = 30.0) -> int:
    stub = service.stub()
    deadline = time.monotonic() + timeout_s
    episodes = -1
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise AssertionError(f"metrics exited ({service.process.returncode}):\n{service.log()[-6000:]}")
        try:
            episodes = stub.GetRunSummary(metrics_pb2.GetRunSummaryRequest(run_id=run_id), timeout=5).episodes
        except grpc.RpcError as error:
            try:  # a service that stops answering is usually on its way out: show why
                exit_code: int | None = service.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                exit_code = None
            raise AssertionError(f"GetRunSummary failed ({error.code()}); exit code {exit_code}:\n"
                                 f"{service.log()[-6000:]}") from error
        if episodes >= expected:
            break
        time.sleep(0.2)
    return episodes


async def dlq_records(bootstrap: str, key: bytes, group_id: str, timeout_s: float = 20.0) -> list[Any]:
    """DLQ records of one consumer group (other metrics processes on the broker dead-letter too)."""
    consumer = AIOKafkaConsumer("gaelp.dlq.v1", bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            found = [r for records in batches.values() for r in records
                     if r.key == key and (dlq_headers.CONSUMER_GROUP, group_id.encode()) in r.headers]
            if found:
                return found
        return []
    finally:
        await consumer.stop()


async def committed_offset(bootstrap: str, group_id: str, partition: TopicPartition) -> int | None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False)
    await consumer.start()
    try:
        return await consumer.committed(partition)
    finally:
        await consumer.stop()


@pytest.mark.timeout(150)
async def test_dlq_trace_sigterm_commit_and_restart(
    metrics_launcher: Any, kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    group_id = f"metrics-{unique_name}"
    run_id = f"life-{unique_name}"
    service = metrics_launcher(tmp_path / "first", group_id)
    settings = load_settings(kafka={"bootstrap": kafka_bootstrap, "enable_idempotence": False, "acks": "1"})
    trace_id, parent_span_id = secrets.token_hex(16), secrets.token_hex(8)
    traced = [("traceparent", f"00-{trace_id}-{parent_span_id}-01".encode())]
    async with BusProducer(settings.kafka) as producer:
        for index in range(3):
            await producer.send(EPISODES, run_id, episode(run_id, index))
        bad = await producer.send_raw(EPISODES.name, run_id.encode(), b"\xff\xfe not protobuf", [])
        last = await producer.send_raw(EPISODES.name, run_id.encode(),
                                       episode(run_id, 3).SerializeToString(), traced)
    assert wait_for_episodes(service, run_id, 4) == 4

    (dead,) = await dlq_records(kafka_bootstrap, run_id.encode(), group_id)
    headers = {key: value.decode() for key, value in dead.headers}
    assert dead.value == b"\xff\xfe not protobuf"
    assert headers[dlq_headers.SOURCE_TOPIC] == EPISODES.name
    assert headers[dlq_headers.SOURCE_PARTITION] == str(bad.partition)
    assert headers[dlq_headers.SOURCE_OFFSET] == str(bad.offset)
    assert headers[dlq_headers.ERROR_CLASS] == "UndecodableMessage"

    started = time.monotonic()
    assert service.stop() == 0, service.log()[-3000:]
    assert time.monotonic() - started < service.settings.grpc.grace_period_s
    partition = TopicPartition(EPISODES.name, last.partition)
    committed = await committed_offset(kafka_bootstrap, group_id, partition)
    assert committed == last.offset + 1, service.log()[-8000:]

    spans = [json.loads(line) for line in service.span_file.read_text().splitlines()]
    (process,) = [s for s in spans if s["trace_id"] == trace_id and s["kind"] == "CONSUMER"]
    assert process["name"] == f"process {EPISODES.name}"
    assert process["parent_span_id"] == parent_span_id
    assert process["attributes"]["messaging.kafka.message.offset"] == last.offset
    published = [s for s in spans if s["trace_id"] == trace_id and s["kind"] == "PRODUCER"]
    assert [s["parent_span_id"] for s in published] == [process["span_id"]]  # its assessment

    # The tables come back from their changelogs and the committed offsets are not replayed.
    restarted = metrics_launcher(tmp_path / "second", group_id)
    summary = restarted.stub().GetRunSummary(metrics_pb2.GetRunSummaryRequest(run_id=run_id), timeout=5)
    assert summary.episodes == 4
    async with BusProducer(settings.kafka) as producer:
        for index in range(4, 6):
            await producer.send(EPISODES, run_id, episode(run_id, index))
    assert wait_for_episodes(restarted, run_id, 6) == 6
    await asyncio.sleep(1.0)  # a redelivery would show up as a count above 6
    summary = restarted.stub().GetRunSummary(metrics_pb2.GetRunSummaryRequest(run_id=run_id), timeout=5)
    assert summary.episodes == 6
    assert summary.phases[0].episodes == 6
    assert restarted.stop() == 0


def passing_episode(run_id: str, index: int) -> events_pb2.EpisodeSummary:
    """Reward and success hold from the first episode on: the consistency figure counts episodes."""
    return events_pb2.EpisodeSummary(
        run_id=run_id, episode_id=f"{run_id}-{index}", phase=common_pb2.PHASE_SIMULATION, task="basic",
        normalized_reward=0.9, success=True, roas=2.0, spend=5.0, revenue=10.0, budget=10.0,
    )


def consistency(assessment: events_pb2.GraduationAssessment) -> float:
    return next(criterion.value for criterion in assessment.criteria if criterion.name == "consistency")


HANDOVER_EPISODES = 4000


@pytest.mark.timeout(300)
async def test_a_rebalance_in_a_backlog_loses_nothing_and_counts_nothing_twice(
    metrics_launcher: Any, kafka_bootstrap: str, unique_name: str, tmp_path: Path, assessment_feed: Any
) -> None:
    """A second member joins while the first folds a backlog (a rebalance: the first's batch in flight
    is flushed and committed before its partitions go), then the first leaves and the second takes
    every partition from the changelogs. Whatever batch the handover falls in, each run counts every
    episode once, and its assessments (consistency = episodes folded) rise strictly: none twice."""
    group_id = f"metrics-{unique_name}"
    run_ids = [f"handover-{unique_name}-{index}" for index in range(3)]
    settings = load_settings(kafka={"bootstrap": kafka_bootstrap, "enable_idempotence": False, "acks": "1"})
    async with BusProducer(settings.kafka) as producer:
        pending = [await producer.enqueue(EPISODES, run_id, passing_episode(run_id, index))
                   for index in range(HANDOVER_EPISODES) for run_id in run_ids]
        await asyncio.gather(*pending)

    first = metrics_launcher(tmp_path / "first", group_id)
    assert sum(wait_for_episodes(first, run_id, 1) for run_id in run_ids[:1]) >= 1
    second = metrics_launcher(tmp_path / "second", group_id)
    assert first.stop() == 0, first.log()[-3000:]
    for run_id in run_ids:
        assert wait_for_episodes(second, run_id, HANDOVER_EPISODES, timeout_s=120) == HANDOVER_EPISODES
    await asyncio.sleep(1.0)  # a redelivery counted twice would show up now
    for run_id in run_ids:
        assert wait_for_episodes(second, run_id, HANDOVER_EPISODES) == HANDOVER_EPISODES
    assert second.stop() == 0, second.log()[-3000:]

    ours = first.assessment_spans() | second.assessment_spans()
    for run_id in run_ids:
        async with assessment_feed(run_id, ours) as feed:
            read = await feed.until(lambda found: bool(found) and consistency(found[-1]) >= HANDOVER_EPISODES)
        figures = [consistency(assessment) for assessment in read]
        assert figures == sorted(set(figures)) and figures[-1] == HANDOVER_EPISODES, figures


def test_topics_partitioned_unlike_the_tables_stop_the_service_at_start(
    metrics_launcher: Any, unique_name: str, tmp_path: Path
) -> None:
    """Settings that give a table fewer partitions than the topic it folds (as when the broker
    auto-created the topic with its default count) are refused before anything is consumed: the
    first changelog write to a partition the table lacks would crash faust's producer."""
    partitions = {"gaelp.episodes.v1": 2, "gaelp.violations.v1": 3, "gaelp.learner-metrics.v1": 1}
    with pytest.raises(RuntimeError, match="metrics exited") as refused:
        metrics_launcher(tmp_path, f"metrics-{unique_name}", kafka={"partitions": partitions})
    assert "gaelp.episodes.v1 has 3 partitions, 2 expected" in str(refused.value)
    assert "gaelp.violations.v1 has" not in str(refused.value)
