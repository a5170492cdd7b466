"""Episodes through the broker into the metrics service: phase-1 criteria flip exactly at their thresholds;
a backlog is folded in batches with one assessment per run and batch, none again after a restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gaelp.bus import EPISODES, BusProducer
from gaelp.config import load_settings
from gaelp.v1 import common_pb2, events_pb2, metrics_pb2

EPISODE_COUNT = 110


def phase1_episode(run_id: str, index: int) -> events_pb2.EpisodeSummary:
    """Episode `index` (1-based) of a series designed so that, with the default criteria
    (window 50, baseline 10 episodes), each criterion first passes at a known episode:
      improvement >= 5%:     reward 0.5 for 10 episodes then 0.92: (5 + .92(n-10))/n >= .525 from n = 11
      avg reward >= 0.7:     (5 + .92(n-10))/n >= 0.7 from n = 20 (0.6989 at 19)
      success rate >= 80%:   episodes 1-15 fail; the window holds 10 failures at n = 55: exactly 0.8
      final curriculum:      level 1 (1-30), 2 (31-60), 3 of 3 from n = 61
      consistency >= 50:     reward and success both hold from 55, so 50 in a row at n = 104
    """
    level = 1 if index <= 30 else 2 if index <= 60 else 3
    return events_pb2.EpisodeSummary(
        run_id=run_id, episode_id=f"{run_id}-{index}", phase=common_pb2.PHASE_SIMULATION,
        task=f"level-{level}",
        normalized_reward=0.5 if index <= 10 else 0.92, total_reward=10.0 * index, success=index > 15,
        roas=2.0, ctr=0.03, spend=10.0, revenue=20.0, budget=12.0, impressions=1000, clicks=30,
        conversions=3, curriculum_level=level, curriculum_levels=3,
        reference_rewards={"random": 0.1, "heuristic": 0.4, "oracle": 1.0},
    )


FIRST_PASS = {
    "improvement": 11,
    "avg_normalized_reward": 20,
    "success_rate": 55,
    "final_curriculum_level": 61,
    "consistency": 104,
}


@pytest.mark.timeout(240)
async def test_phase1_criteria_flip_exactly_when_data_crosses_thresholds(
    metrics_service: Any, kafka_bootstrap: str, unique_name: str, assessment_feed: Any
) -> None:
    run_id = f"grad-{unique_name}"
    settings = load_settings(kafka={"bootstrap": kafka_bootstrap, "enable_idempotence": False, "acks": "1"})
    # The service assesses a run once per batch: one episode at a time, each batch holds one.
    async with BusProducer(settings.kafka) as producer, assessment_feed(run_id) as feed:
        for index in range(1, EPISODE_COUNT + 1):
            await producer.send(EPISODES, run_id, phase1_episode(run_id, index))
            await feed.until(lambda read, count=index: len(read) >= count)
    assessments = feed.read
    assert len(assessments) == EPISODE_COUNT, metrics_service.log()[-3000:]
    for index, assessment in enumerate(assessments, start=1):
        assert assessment.phase == common_pb2.PHASE_SIMULATION
        passed = {criterion.name: criterion.passed for criterion in assessment.criteria}
        assert set(passed) == set(FIRST_PASS)
        for name, first in FIRST_PASS.items():
            assert passed[name] == (index >= first), (name, index, assessment)
        assert assessment.ready_to_graduate == (index >= max(FIRST_PASS.values())), (index, assessment.reason)
        assert not assessment.demote

    final = assessments[-1]
    values = {criterion.name: criterion for criterion in final.criteria}
    assert values["avg_normalized_reward"].value == pytest.approx(0.92)
    assert values["avg_normalized_reward"].threshold == 0.7
    assert values["consistency"].value == EPISODE_COUNT - 55 + 1
    assert final.episodes_considered == 50

    stub = metrics_service.stub()
    served = stub.GetAssessment(metrics_pb2.GetAssessmentRequest(run_id=run_id), timeout=5)
    assert served.ready_to_graduate and [c.passed for c in served.criteria] == [True] * 5
    summary = stub.GetRunSummary(metrics_pb2.GetRunSummaryRequest(run_id=run_id), timeout=5)
    assert summary.episodes == EPISODE_COUNT
    assert summary.current_phase == common_pb2.PHASE_SIMULATION
    (phase,) = summary.phases
    assert phase.episodes == EPISODE_COUNT and phase.ready_to_graduate
    assert phase.success_rate == pytest.approx((EPISODE_COUNT - 15) / EPISODE_COUNT)
    assert phase.window_conversion_rate == pytest.approx(0.1)
    assert phase.window_spend_efficiency == pytest.approx(10 / 12)
    assert phase.curriculum_level == 3
    assert not summary.alerts


def passing_episode(run_id: str, index: int) -> events_pb2.EpisodeSummary:
    """Every criterion's reward and success hold from the first episode: consistency counts episodes."""
    return events_pb2.EpisodeSummary(
        run_id=run_id, episode_id=f"{run_id}-{index}", phase=common_pb2.PHASE_SIMULATION, task="basic",
        normalized_reward=0.9, success=True, roas=2.0, ctr=0.03, spend=10.0, revenue=20.0, budget=12.0,
        clicks=30, conversions=3,
    )


def consistency(assessment: events_pb2.GraduationAssessment) -> float:
    return next(criterion.value for criterion in assessment.criteria if criterion.name == "consistency")


def wait_for(condition: Callable[[], bool], timeout_s: float = 90.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def summary_episodes(service: Any, run_id: str) -> int:
    request = metrics_pb2.GetRunSummaryRequest(run_id=run_id)
    return int(service.stub().GetRunSummary(request, timeout=5).episodes)


BACKLOG = 400


@pytest.mark.timeout(240)
async def test_a_backlog_is_assessed_once_per_batch_and_not_again_after_a_restart(
    metrics_launcher: Any, kafka_bootstrap: str, unique_name: str, tmp_path: Path, assessment_feed: Any
) -> None:
    run_ids = [f"backlog-{unique_name}-{index}" for index in range(2)]
    group_id = f"metrics-{unique_name}"
    settings = load_settings(kafka={"bootstrap": kafka_bootstrap, "enable_idempotence": False, "acks": "1"})
    async with BusProducer(settings.kafka) as producer:
        pending = [await producer.enqueue(EPISODES, run_id, passing_episode(run_id, index))
                   for index in range(BACKLOG) for run_id in run_ids]
        await asyncio.gather(*pending)

    # A long batch window: the backlog is there before the service starts, so batches fill up.
    service = metrics_launcher(tmp_path / "first", group_id, batch_within_s=1.0)
    assert wait_for(lambda: all(summary_episodes(service, run_id) == BACKLOG for run_id in run_ids))
    assert service.stop() == 0, service.log()[-3000:]
    first_spans = service.assessment_spans()
    for run_id in run_ids:
        async with assessment_feed(run_id, first_spans) as feed:
            read = await feed.until(lambda found: bool(found) and consistency(found[-1]) >= BACKLOG)
        figures = [consistency(assessment) for assessment in read]
        # Each assessment carries the figures after its batch: strictly rising, none twice, the
        # last after the whole backlog, and far fewer assessments than episodes.
        assert figures == sorted(set(figures)) and figures[-1] == BACKLOG, figures
        assert len(figures) < BACKLOG / 10, figures

    # A restart recovers the counts and publishes nothing again; the next episode is assessed once.
    restarted = metrics_launcher(tmp_path / "second", group_id)
    async with BusProducer(settings.kafka) as producer:
        for run_id in run_ids:
            assert summary_episodes(restarted, run_id) == BACKLOG
            await producer.send(EPISODES, run_id, passing_episode(run_id, BACKLOG))
    assert wait_for(lambda: all(summary_episodes(restarted, run_id) == BACKLOG + 1 for run_id in run_ids))
    assert restarted.stop() == 0, restarted.log()[-3000:]
    second_spans = restarted.assessment_spans()
    for run_id in run_ids:
        async with assessment_feed(run_id, second_spans) as feed:
            await feed.until(lambda found: bool(found))
            await feed.poll(timeout_ms=1000)  # and anything published after it
        assert [consistency(assessment) for assessment in feed.read] == [BACKLOG + 1]
