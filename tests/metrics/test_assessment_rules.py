"""The aggregation and criteria rules on their own (no broker): phases 2-4, redelivery, curves, shifts."""

from __future__ import annotations

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from gaelp.config.sections.metrics import MetricsSettings
from gaelp.v1 import common_pb2, events_pb2
from metrics.assessment import RunViolations, assess, entry_violations
from metrics.state import (
    Alert,
    CampaignViolations,
    RunState,
    apply_episode,
    apply_violation,
    episodes_to_threshold,
    forget_before,
)


def feed(run: RunState, settings: MetricsSettings, episodes: list[events_pb2.EpisodeSummary]) -> None:
    start = run.next_offsets.get(0, 0)
    for offset, episode in enumerate(episodes, start=start):
        apply_episode(run, episode, 0, offset, settings)


def criteria(run: RunState, phase: int, settings: MetricsSettings,
             violations: RunViolations | None = None) -> dict[str, events_pb2.CriterionResult]:
    assessment = assess(run, phase, violations or RunViolations(), settings)
    return {c.name: c for c in assessment.criteria}


def test_phase2_uses_window_means_of_the_ope_figures() -> None:
    settings = MetricsSettings(window_episodes=4)
    run = RunState(run_id="r")
    historical = common_pb2.PHASE_HISTORICAL
    feed(run, settings, [
        events_pb2.EpisodeSummary(run_id="r", phase=historical, historical_match=m, prediction_accuracy=0.9,
                                  prediction_correlation=0.85)
        for m in (0.5, 0.96, 0.96, 0.96, 0.96)  # the 0.5 leaves the 4-episode window
    ])
    results = criteria(run, historical, settings)
    assert results["historical_match"].value == pytest.approx(0.96) and results["historical_match"].passed
    assert results["prediction_accuracy"].passed and results["correlation"].passed
    assert assess(run, historical, RunViolations(), settings).ready_to_graduate


def test_phase4_transfer_effectiveness_and_sustained_improvement() -> None:
    settings = MetricsSettings(window_episodes=10, baseline_episodes=2)
    run = RunState(run_id="r")
    scaled = common_pb2.PHASE_SCALED
    episodes = [events_pb2.EpisodeSummary(run_id="r", phase=scaled, normalized_reward=0.5, success=True)] * 2
    # Transfer episodes carry the fine-tuned and the from-scratch policy's scores on the held-out products.
    episodes += [events_pb2.EpisodeSummary(run_id="r", phase=scaled, normalized_reward=0.8, success=True,
                                           transfer=i % 2 == 0, transfer_fine_tuned_score=0.6 + i / 100,
                                           transfer_scratch_score=0.5 if i % 2 == 0 else 0.0)
                 for i in range(8)]
    feed(run, settings, episodes)
    results = criteria(run, scaled, settings)
    assert results["transfer_effectiveness"].value == pytest.approx(0.63 / 0.5)
    assert results["transfer_effectiveness"].passed
    # No phase-3 episodes: the phase's own first episodes are the baseline.
    assert results["sustained_improvement"].value == pytest.approx((0.74 - 0.5) / 0.5)
    assert results["multi_campaign_success"].value == 1.0


def test_phase4_improvement_is_measured_against_the_phase_3_level() -> None:
    settings = MetricsSettings(window_episodes=10)
    run = RunState(run_id="r")
    real, scaled = common_pb2.PHASE_REAL_TESTING, common_pb2.PHASE_SCALED
    feed(run, settings, [events_pb2.EpisodeSummary(run_id="r", phase=real, normalized_reward=r, spend=10,
                                                   budget=10, revenue=10 * (1 + r)) for r in (0.1, 0.3, 0.2)])
    feed(run, settings, [events_pb2.EpisodeSummary(run_id="r", phase=scaled, normalized_reward=r,
                                                   success=True) for r in (0.2, 0.3, 0.25)])
    results = criteria(run, scaled, settings)
    assert results["sustained_improvement"].value == pytest.approx((0.25 - 0.2) / 0.2)
    assert results["sustained_improvement"].passed  # +25% on phase 3's mean ROI (0.2)
    # No transfer episode: nothing shows the policy transfers.
    assert results["transfer_effectiveness"].value == 0.0 and not results["transfer_effectiveness"].passed


def test_phase3_positive_roi_streak_resets_and_violations_must_be_zero() -> None:
    settings = MetricsSettings()
    run = RunState(run_id="r")
    real = common_pb2.PHASE_REAL_TESTING
    revenues = [12, 12, 8, 12, 12, 12, 12, 12]  # the loss at the third resets the streak
    feed(run, settings, [events_pb2.EpisodeSummary(run_id="r", phase=real, spend=10, budget=10, revenue=r)
                         for r in revenues])
    results = criteria(run, real, settings, RunViolations(count=1))
    assert results["consecutive_positive_roi"].value == 5 and results["consecutive_positive_roi"].passed
    assert results["roi"].value == pytest.approx((sum(revenues) - 80) / 80)
    assert results["budget_efficiency"].value == pytest.approx(1.0)
    assert not results["violations"].passed
    assert not assess(run, real, RunViolations(count=1), settings).demote
    assert assess(run, real, RunViolations(count=1, critical=1), settings).demote


def test_redelivered_offsets_are_skipped_and_failed_episodes_stay_out_of_windows() -> None:
    settings = MetricsSettings()
    run = RunState(run_id="r")
    sim = common_pb2.PHASE_SIMULATION
    good = events_pb2.EpisodeSummary(run_id="r", phase=sim, normalized_reward=1.0)
    apply_episode(run, good, 0, 7, settings)
    assert run.unapplied([(0, 7), (0, 3), (0, 8)]) == [2]  # 7 and 3 were applied, 8 was not
    assert run.unapplied([(1, 0)]) == [0]
    apply_episode(run, events_pb2.EpisodeSummary(run_id="r", phase=sim, failed=True), 0, 8, settings)
    state = run.phases[sim]
    assert (state.episodes, state.failed_episodes, len(state.window)) == (2, 1, 1)


def test_a_redelivery_in_the_same_batch_as_its_original_is_not_new() -> None:
    run = RunState(run_id="r", next_offsets={0: 5})
    # Offsets 3 and 4 were applied before; 6 and 7 come twice (the stream refetched them after a
    # rebalance while the first copies still waited); partition 1 is apart.
    batch = [(0, 3), (0, 6), (0, 7), (1, 0), (0, 4), (0, 6), (0, 7), (0, 8), (1, 0)]
    assert run.unapplied(batch) == [1, 2, 3, 7]
    assert run.next_offsets == {0: 5}  # asking changes nothing


def test_curves_keep_their_whole_history_within_the_point_budget() -> None:
    settings = MetricsSettings(curve_points=10)
    run = RunState(run_id="r")
    sim = common_pb2.PHASE_SIMULATION
    feed(run, settings, [events_pb2.EpisodeSummary(run_id="r", phase=sim, task="t", normalized_reward=i / 100)
                         for i in range(1, 101)])
    curve = run.phases[sim].curves["t"]
    assert len(curve) <= 10
    assert sum(point.count for point in curve) == 100
    assert curve[-1].episode == 100
    total = sum(point.normalized_reward * point.count for point in curve)
    assert total == pytest.approx(sum(i / 100 for i in range(1, 101)))


def test_no_alert_before_the_reference_fills_and_projection_to_threshold() -> None:
    settings = MetricsSettings()
    anomaly = settings.anomaly
    run = RunState(run_id="r")
    sim = common_pb2.PHASE_SIMULATION
    reference = anomaly.block_episodes * anomaly.min_reference_blocks
    steady = [events_pb2.EpisodeSummary(run_id="r", phase=sim, task="t", roas=3.0, normalized_reward=0.5)
              for _ in range(reference - anomaly.block_episodes)]
    collapsed = [events_pb2.EpisodeSummary(run_id="r", phase=sim, task="t", roas=0.1, normalized_reward=0.5)
                 for _ in range(anomaly.block_episodes * anomaly.persistence)]
    alerts = [alert for offset, episode in enumerate(steady + collapsed)
              for alert in apply_episode(run, episode, 0, offset, settings)]
    assert alerts == []  # the first collapsed block entered the reference: too few blocks to score

    rising = RunState(run_id="s")
    feed(rising, settings, [events_pb2.EpisodeSummary(run_id="s", phase=sim, normalized_reward=0.01 * i)
                            for i in range(1, 21)])
    # window mean 0.105, slope 0.01/episode: (0.7 - 0.105) / 0.01 = 59.5 -> 60 episodes
    assert episodes_to_threshold(rising.phases[sim], 0.7) == 60


def _series(run: RunState, settings: MetricsSettings, values: list[float], task: str = "t") -> list[Alert]:
    start = run.next_offsets.get(0, 0)
    return [alert for offset, value in enumerate(values, start=start)
            for alert in apply_episode(run, events_pb2.EpisodeSummary(
                run_id=run.run_id, phase=common_pb2.PHASE_SIMULATION, task=task, roas=value,
                normalized_reward=0.5, ctr=0.03), 0, offset, settings)]


def test_one_bad_block_or_one_outlier_episode_raises_no_alert() -> None:
    settings = MetricsSettings()
    block = settings.anomaly.block_episodes
    run = RunState(run_id="r")
    steady = [2.9, 3.1] * (block * 3)
    assert _series(run, settings, steady + [0.0] + [3.0] * (block - 1)) == []  # one episode at zero
    assert _series(run, settings, [0.3] * block + steady) == []  # one collapsed block, then back


def test_a_persistent_collapse_alerts_once_per_excursion_and_per_task() -> None:
    settings = MetricsSettings()
    anomaly = settings.anomaly
    block = anomaly.block_episodes
    run = RunState(run_id="r")
    steady = [2.9, 3.1] * (block * 2)
    collapse = [0.3] * (block * (anomaly.persistence + 3))
    (alert,) = _series(run, settings, steady + collapse)
    assert alert.metric == "roas" and alert.z_score <= -anomaly.z_threshold
    assert alert.episode_index == len(steady) + block * anomaly.persistence
    assert alert.value == pytest.approx(0.3) and alert.expected == pytest.approx(3.0)
    # Another task starts with its own reference: its lower level is not a collapse.
    assert _series(run, settings, [0.5] * (block * 6), task="other") == []
    # Back on the task after another: it warms up afresh, then down again: a second alert.
    assert len(_series(run, settings, steady + collapse)) == 1


def _at(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def test_a_reentered_phase_is_assessed_on_its_new_entry_only() -> None:
    """Demoted from phase 3 by a critical violation, graduated back: the new entry's assessment counts
    neither the earlier entry's violations nor its campaigns (window, positive-ROI streak)."""
    settings = MetricsSettings()
    run = RunState(run_id="r")
    real, historical = common_pb2.PHASE_REAL_TESTING, common_pb2.PHASE_HISTORICAL
    first_entered, reentered = 1_000.0, 2_000.0

    def campaign(entry: int, entered_at: float, revenue: float) -> events_pb2.EpisodeSummary:
        return events_pb2.EpisodeSummary(run_id="r", phase=real, spend=10, budget=20, revenue=revenue,
                                         phase_entry=entry, phase_entered_at=_at(entered_at))

    feed(run, settings, [campaign(1, first_entered, 12) for _ in range(4)])
    violations = CampaignViolations(campaign_id="ledger", run_id="r")
    for offset, (severity, at) in enumerate([(events_pb2.SEVERITY_CRITICAL, 1_500.0),
                                             (events_pb2.SEVERITY_WARNING, 1_600.0)]):
        apply_violation(violations, events_pb2.Violation(
            violation_id=f"v{offset}", run_id="r", campaign_id="ledger", rule="spend_above_reservation",
            severity=severity, phase=real, occurred_at=_at(at)), 0, offset, 10)  # type: ignore[arg-type]
    first = assess(run, real, entry_violations([violations], real, run.phases[real].entered_at), settings)
    assert first.demote and first.phase_entry == 1
    assert {c.name: c.value for c in first.criteria}["violations"] == 2

    # Phase 2 in between, then the new entry: one warning of its own, three profitable campaigns.
    feed(run, settings, [events_pb2.EpisodeSummary(run_id="r", phase=historical, historical_match=0.99,
                                                   phase_entry=1, phase_entered_at=_at(1_700.0))])
    apply_violation(violations, events_pb2.Violation(
        violation_id="v2", run_id="r", campaign_id="ledger", rule="daily_limit",
        severity=events_pb2.SEVERITY_WARNING, phase=real, occurred_at=_at(2_100.0)), 0, 2, 10)  # type: ignore[arg-type]
    feed(run, settings, [campaign(2, reentered, revenue) for revenue in (15, 16, 14)])
    state = run.phases[real]
    assert (state.entry, state.entered_at, state.episodes, len(state.window)) == (2, reentered, 7, 3)
    counted = entry_violations([violations], real, state.entered_at)
    assert counted == RunViolations(count=1, critical=0)
    second = assess(run, real, counted, settings)
    assert not second.demote and second.phase_entry == 2
    figures = {c.name: c.value for c in second.criteria}
    assert figures["violations"] == 1  # the new entry's own warning, not the earlier entry's two
    assert figures["consecutive_positive_roi"] == 3  # the earlier entry's four profitable ones do not count
    assert figures["roi"] == pytest.approx((45 - 30) / 30)  # the new entry's window only
    # An earlier entry's campaign arriving late counts in the phase's totals, not in the new entry.
    feed(run, settings, [campaign(1, first_entered, 30)])
    assert (state.episodes, len(state.window), state.positive_roi_streak) == (8, 3, 3)

    # The earlier entry's times leave the state for a count; what the entries count stays the same.
    forget_before(violations, real, state.entered_at)
    assert violations.occurred_by_phase[real] == [2_100.0]
    assert violations.critical_occurred_by_phase[real] == []
    assert (violations.before_by_phase[real], violations.critical_before_by_phase[real]) == (2, 1)
    assert entry_violations([violations], real, state.entered_at) == counted
    # The earlier entry's own figures are gone: no assessment asks for them again.
    assert entry_violations([violations], real, 0.0) == RunViolations(count=1, critical=0)


def test_violations_without_a_time_count_in_every_entry() -> None:
    """State written before violations carried their time (or a producer that sets none): counted
    in the current entry too, the safe side for a criterion that must be zero."""
    real = common_pb2.PHASE_REAL_TESTING
    violations = CampaignViolations(campaign_id="ledger", run_id="r")
    apply_violation(violations, events_pb2.Violation(
        violation_id="v0", run_id="r", campaign_id="ledger", rule="commit_refused",
        severity=events_pb2.SEVERITY_CRITICAL, phase=real), 0, 0, 10)
    assert entry_violations([violations], real, 5_000.0) == RunViolations(count=1, critical=1)


def test_a_refusal_under_an_operator_stop_does_not_fail_the_zero_violations_criterion() -> None:
    """The ledger refuses every reservation while an emergency stop is in force and records each
    refusal with info severity: the operator's doing, kept for the record, not the agent's violation.
    A warning in the same entry still counts."""
    settings = MetricsSettings()
    run = RunState(run_id="r")
    real = common_pb2.PHASE_REAL_TESTING
    feed(run, settings, [events_pb2.EpisodeSummary(run_id="r", phase=real, spend=10, budget=12, revenue=12,
                                                   phase_entry=1, phase_entered_at=_at(1_000.0))
                         for _ in range(5)])
    violations = CampaignViolations(campaign_id="ledger", run_id="r")
    apply_violation(violations, events_pb2.Violation(
        violation_id="v0", run_id="r", campaign_id="ledger", rule="emergency_stop",
        severity=events_pb2.SEVERITY_INFO, phase=real, action_taken="refused",
        detail="emergency stop in force: drill", occurred_at=_at(1_100.0)), 0, 0, 10)
    counted = entry_violations([violations], real, run.phases[real].entered_at)
    assert counted == RunViolations(count=0, critical=0)
    assert violations.info_by_phase == {real: 1}
    assert [record.rule for record in violations.recent] == ["emergency_stop"]
    assert assess(run, real, counted, settings).ready_to_graduate

    apply_violation(violations, events_pb2.Violation(
        violation_id="v1", run_id="r", campaign_id="ledger", rule="daily_limit",
        severity=events_pb2.SEVERITY_WARNING, phase=real, occurred_at=_at(1_200.0)), 0, 1, 10)
    counted = entry_violations([violations], real, run.phases[real].entered_at)
    assert counted == RunViolations(count=1, critical=0)
    assessment = assess(run, real, counted, settings)
    assert not assessment.ready_to_graduate
    assert {c.name: c.passed for c in assessment.criteria}["violations"] is False
