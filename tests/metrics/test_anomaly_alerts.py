"""A ROAS collapse that persists raises one alert (windowed robust shift rule) and the assessment demotes."""

from __future__ import annotations

from typing import Any

import pytest

from gaelp.bus import EPISODES, VIOLATIONS, BusProducer
from gaelp.config import load_settings
from gaelp.v1 import common_pb2, events_pb2, metrics_pb2

STEADY_EPISODES = 30
ANOMALY = load_settings().metrics.anomaly
COLLAPSED_EPISODES = ANOMALY.block_episodes * ANOMALY.persistence  # the episodes it takes to alert


def episode(run_id: str, index: int, roas: float) -> events_pb2.EpisodeSummary:
    return events_pb2.EpisodeSummary(
        run_id=run_id, episode_id=f"{run_id}-{index}", phase=common_pb2.PHASE_SIMULATION, task="basic",
        normalized_reward=0.8, success=True, roas=roas, ctr=0.03, spend=10.0, revenue=10.0 * roas,
        budget=10.0, clicks=30, conversions=3,
    )


@pytest.mark.timeout(90)
async def test_roas_collapse_raises_an_alert_and_demotes(
    metrics_service: Any, kafka_bootstrap: str, unique_name: str, assessment_feed: Any
) -> None:
    run_id = f"anomaly-{unique_name}"
    settings = load_settings(kafka={"bootstrap": kafka_bootstrap, "enable_idempotence": False, "acks": "1"})
    total = STEADY_EPISODES + COLLAPSED_EPISODES
    async with BusProducer(settings.kafka) as producer:
        for index in range(1, STEADY_EPISODES + 1):
            await producer.send(EPISODES, run_id, episode(run_id, index, 2.9 if index % 2 else 3.1))
        for index in range(STEADY_EPISODES + 1, total + 1):
            await producer.send(EPISODES, run_id, episode(run_id, index, 0.3))

    # One assessment per batch the service folds: only the one that takes in the last episode demotes.
    async with assessment_feed(run_id) as feed:
        assessments = await feed.until(lambda read: bool(read) and read[-1].episodes_considered == total)
    assert [a.demote for a in assessments] == [False] * (len(assessments) - 1) + [True]
    assert f"performance collapse at episode {total}" in assessments[-1].reason

    summary = metrics_service.stub().GetRunSummary(metrics_pb2.GetRunSummaryRequest(run_id=run_id), timeout=5)
    (alert,) = summary.alert_details
    assert alert.metric == "roas" and alert.episode_index == total
    assert alert.value == pytest.approx(0.3)
    assert alert.expected == pytest.approx(3.0, abs=0.1)
    assert alert.z_score <= -metrics_service.settings.metrics.anomaly.z_threshold
    assert summary.alerts == [alert.message] and "roas collapse" in alert.message


@pytest.mark.timeout(90)
async def test_critical_violation_counts_and_demotes(
    metrics_service: Any, kafka_bootstrap: str, unique_name: str, assessment_feed: Any
) -> None:
    run_id = f"violation-{unique_name}"
    settings = load_settings(kafka={"bootstrap": kafka_bootstrap, "enable_idempotence": False, "acks": "1"})
    real = common_pb2.PHASE_REAL_TESTING
    async with BusProducer(settings.kafka) as producer:
        for _ in range(6):
            await producer.send(EPISODES, run_id, events_pb2.EpisodeSummary(
                run_id=run_id, phase=real, task="sandbox", spend=10.0, revenue=12.0, budget=11.0, roas=1.2,
                normalized_reward=0.6, success=True,
            ))
        async with assessment_feed(run_id) as feed:
            # Topics are not ordered with each other: the violation goes out once the episodes are in.
            read = await feed.until(lambda read: bool(read) and read[-1].episodes_considered == 6)
            before = read[-1]
            await producer.send(VIOLATIONS, "campaign-1", events_pb2.Violation(
                violation_id="v1", campaign_id="campaign-1", run_id=run_id, rule="daily_limit",
                severity=events_pb2.SEVERITY_CRITICAL, amount=60.0, phase=real, action_taken="refused",
            ))
            read = await feed.until(lambda read: len(read) > 0 and read[-1] is not before)
    after = read[-1]
    assert before.ready_to_graduate and not before.demote, before.reason
    checks = {c.name: c for c in after.criteria}
    assert checks["violations"].value == 1 and not checks["violations"].passed
    assert after.demote and not after.ready_to_graduate
    assert {c.name for c in before.criteria} == {
        "consecutive_positive_roi", "roi", "budget_efficiency", "violations"}
    summary = metrics_service.stub().GetRunSummary(metrics_pb2.GetRunSummaryRequest(run_id=run_id), timeout=5)
    assert summary.phases[0].violations == 1
