"""Episodes through the broker into the metrics service: phase-1 criteria flip exactly at their thresholds."""

from __future__ import annotations

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


@pytest.mark.timeout(120)
async def test_phase1_criteria_flip_exactly_when_data_crosses_thresholds(
    metrics_service: Any, kafka_bootstrap: str, unique_name: str, read_assessments: Any
) -> None:
    run_id = f"grad-{unique_name}"
    settings = load_settings(kafka={"bootstrap": kafka_bootstrap, "enable_idempotence": False, "acks": "1"})
    async with BusProducer(settings.kafka) as producer:
        for index in range(1, EPISODE_COUNT + 1):
            await producer.send(EPISODES, run_id, phase1_episode(run_id, index))

    assessments = await read_assessments(run_id, EPISODE_COUNT)
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
