"""Per-run aggregates kept in the faust tables: rolling windows, streaks, shift detectors, curves.

Everything here is plain data (pydantic models stored as JSON in the table changelogs) plus the
pure functions that fold one event into it, so the stream agents stay thin and this is unit-testable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from gaelp.config.sections.metrics import MetricsSettings
from gaelp.v1 import events_pb2
from metrics.anomaly import Alert, ShiftDetector
from metrics.anomaly import detect_anomalies as _detect_anomalies


class WindowPoint(BaseModel):
    """The figures of one non-failed episode that the rolling window and criteria need."""

    normalized_reward: float
    reward: float
    success: bool
    roas: float
    ctr: float
    conversions: int
    clicks: int
    spend: float
    revenue: float
    budget: float
    historical_match: float
    prediction_accuracy: float
    prediction_correlation: float
    transfer: bool
    transfer_fine_tuned_score: float = 0.0
    transfer_scratch_score: float = 0.0


class CurvePoint(BaseModel):
    """Mean of `count` consecutive episodes of one task, ending at episode `episode` of the phase."""

    episode: int
    normalized_reward: float
    reward: float
    roas: float
    spend: float
    budget: float
    count: int = 1


class PhaseState(BaseModel):
    """A phase's aggregates. Totals, curves, detectors and the baseline cover the phase's whole life;
    the window, the streaks and the violations the criteria count cover its current entry only
    (`entry`, EpisodeSummary.phase_entry: a run demoted out of the phase and graduated back starts
    its criteria afresh, and an earlier entry's critical violation does not demote the new one)."""

    phase: int
    entry: int = 0  # the current entry into the phase (0: its episodes do not say)
    entered_at: float = 0.0  # when that entry began, seconds since the epoch (0: the run's whole life)
    episodes: int = 0
    failed_episodes: int = 0
    sum_reward: float = 0.0
    sum_normalized_reward: float = 0.0
    sum_roas: float = 0.0
    sum_ctr: float = 0.0
    successes: int = 0
    total_spend: float = 0.0
    total_revenue: float = 0.0
    total_budget: float = 0.0
    window: list[WindowPoint] = Field(default_factory=list)
    baseline: list[float] = Field(default_factory=list, description="first episodes' normalized rewards")
    consistency_streak: int = 0
    positive_roi_streak: int = 0
    curriculum_level: int = 0
    curriculum_levels: int = 0
    detectors: dict[str, dict[str, ShiftDetector]] = Field(default_factory=dict, description="task -> metric")
    curves: dict[str, list[CurvePoint]] = Field(default_factory=dict, description="per task")
    references: dict[str, dict[str, float]] = Field(default_factory=dict, description="per task")
    last_policy_version: int = 0
    collapse_at_episode: int = Field(0, description="index of the latest downward ROAS/reward alert")

    # Running sums over the window (rebuilt from it when parsed, exact again at every wrap), so the
    # criteria evaluated after each episode cost O(1) instead of a pass over the window.
    window_reward_sum: float = Field(0.0, exclude=True)
    window_successes: int = Field(0, exclude=True)

    def model_post_init(self, context: Any) -> None:
        self.resum_window()

    def resum_window(self) -> None:
        self.window_reward_sum = math.fsum(point.normalized_reward for point in self.window)
        self.window_successes = sum(1 for point in self.window if point.success)

    @property
    def completed(self) -> int:
        return self.episodes - self.failed_episodes


class RunState(BaseModel):
    run_id: str
    current_phase: int = 0
    phases: dict[int, PhaseState] = Field(default_factory=dict)
    alerts: list[Alert] = Field(default_factory=list)
    last_policy_version: int = 0
    # Next offset to apply per source partition: a redelivered message (at-least-once) is skipped.
    next_offsets: dict[int, int] = Field(default_factory=dict)

    @property
    def episodes(self) -> int:
        return sum(phase.episodes for phase in self.phases.values())

    def unapplied(self, offsets: Sequence[tuple[int, int]]) -> list[int]:
        """Indexes of the (partition, offset) pairs of a batch that are new to the run, in order.

        A record is new if its offset is past the state's next offset and past every earlier record
        of the batch on its partition: a redelivery can land in the same batch as the original (a
        rebalance seeks back to the committed offset while fetched records still wait in the
        stream), and checking the state alone would fold both.
        """
        next_offsets = dict(self.next_offsets)
        new = []
        for index, (partition, offset) in enumerate(offsets):
            if offset >= next_offsets.get(partition, 0):
                next_offsets[partition] = offset + 1
                new.append(index)
        return new


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def window_reward(state: PhaseState) -> float:
    return state.window_reward_sum / len(state.window) if state.window else 0.0


def window_success_rate(state: PhaseState) -> float:
    return state.window_successes / len(state.window) if state.window else 0.0


def slope(values: list[float]) -> float:
    """Least-squares slope per episode."""
    n = len(values)
    if n < 2:
        return 0.0
    x_mean = (n - 1) / 2
    y_mean = mean(values)
    numerator = sum((i - x_mean) * (y - y_mean) for i, y in enumerate(values))
    denominator = sum((i - x_mean) ** 2 for i in range(n))
    return numerator / denominator


def episodes_to_threshold(state: PhaseState, threshold: float) -> float:
    """Episodes until the window reward reaches threshold on the current slope; 0 if there, -1 if never."""
    current = window_reward(state)
    if current >= threshold:
        return 0.0
    trend = slope([point.normalized_reward for point in state.window])
    if trend <= 0:
        return -1.0
    return math.ceil((threshold - current) / trend)


def _point(episode: events_pb2.EpisodeSummary) -> WindowPoint:
    return WindowPoint(
        normalized_reward=episode.normalized_reward,
        reward=episode.total_reward,
        success=episode.success,
        roas=episode.roas,
        ctr=episode.ctr,
        conversions=episode.conversions,
        clicks=episode.clicks,
        spend=episode.spend,
        revenue=episode.revenue,
        budget=episode.budget,
        historical_match=episode.historical_match,
        prediction_accuracy=episode.prediction_accuracy,
        prediction_correlation=episode.prediction_correlation,
        transfer=episode.transfer,
        transfer_fine_tuned_score=episode.transfer_fine_tuned_score,
        transfer_scratch_score=episode.transfer_scratch_score,
    )


def _add_curve_point(curve: list[CurvePoint], point: CurvePoint, max_points: int) -> None:
    """Append; when full, merge neighbouring pairs so the curve keeps its whole history at half the detail."""
    curve.append(point)
    if len(curve) <= max_points:
        return
    merged: list[CurvePoint] = []
    for i in range(0, len(curve) - 1, 2):
        a, b = curve[i], curve[i + 1]
        total = a.count + b.count

        def weighted(x: float, y: float, a_count: int = a.count, b_count: int = b.count,
                     both: int = total) -> float:
            return (x * a_count + y * b_count) / both

        merged.append(CurvePoint(
            episode=b.episode,
            normalized_reward=weighted(a.normalized_reward, b.normalized_reward),
            reward=weighted(a.reward, b.reward),
            roas=weighted(a.roas, b.roas),
            spend=a.spend + b.spend,
            budget=a.budget + b.budget,
            count=total,
        ))
    if len(curve) % 2:
        merged.append(curve[-1])
    curve[:] = merged


def apply_episode(
    run: RunState, episode: events_pb2.EpisodeSummary, partition: int, offset: int, settings: MetricsSettings
) -> list[Alert]:
    """Fold one episode into the run; return the alerts it raised."""
    return apply_episodes(run, [(partition, offset, episode)], settings)


def apply_episodes(
    run: RunState, episodes: Sequence[tuple[int, int, events_pb2.EpisodeSummary]], settings: MetricsSettings
) -> list[Alert]:
    """Fold a run's episodes (source partition, offset, episode) in order; return the alerts raised.

    Failed episodes (the environment broke) count but stay out of the windows, curves and detectors:
    they say nothing about the policy. The result is that of folding them one at a time.
    """
    alerts: list[Alert] = []
    start = 0
    while start < len(episodes):
        phase = episodes[start][2].phase
        end = start + 1
        while end < len(episodes) and episodes[end][2].phase == phase:
            end += 1
        alerts += _fold_phase(run, episodes[start:end], settings)
        start = end
    run.alerts.extend(alerts)
    del run.alerts[:-settings.anomaly.history]
    return alerts


def _fold_phase(
    run: RunState, episodes: Sequence[tuple[int, int, events_pb2.EpisodeSummary]], settings: MetricsSettings
) -> list[Alert]:
    """Consecutive episodes of one phase. The running figures live in locals while they fold and are
    written back once: a pydantic attribute write costs about as much as the arithmetic of a fold."""
    phase = episodes[0][2].phase
    state = run.phases.get(phase)
    if state is None:
        state = run.phases[phase] = PhaseState(phase=phase)
    size, baseline_size = settings.window_episodes, settings.baseline_episodes
    reward_threshold = settings.phase1.avg_normalized_reward.threshold
    success_threshold = settings.phase1.success_rate.threshold
    window, baseline, curves, references = state.window, state.baseline, state.curves, state.references
    count, failed = state.episodes, state.failed_episodes
    run_version, version = run.last_policy_version, state.last_policy_version
    level, levels = state.curriculum_level, state.curriculum_levels
    entry, entered_at = state.entry, state.entered_at
    sum_reward, sum_normalized, sum_roas, sum_ctr = (state.sum_reward, state.sum_normalized_reward,
                                                     state.sum_roas, state.sum_ctr)
    successes, spend, revenue, budget = (state.successes, state.total_spend, state.total_revenue,
                                         state.total_budget)
    window_sum, window_successes = state.window_reward_sum, state.window_successes
    streak, roi_streak = state.consistency_streak, state.positive_roi_streak
    alerts: list[Alert] = []
    for partition, offset, episode in episodes:
        run.next_offsets[partition] = offset + 1
        count += 1
        run_version = max(run_version, episode.policy_version)
        version = max(version, episode.policy_version)
        level = max(level, episode.curriculum_level)
        levels = max(levels, episode.curriculum_levels)
        if episode.reference_rewards:
            references[episode.task] = dict(episode.reference_rewards)
        if episode.phase_entry > entry:  # the run re-entered the phase: its criteria start afresh
            entry = episode.phase_entry
            entered_at = (episode.phase_entered_at.ToNanoseconds() / 1e9
                          if episode.HasField("phase_entered_at") else 0.0)
            window.clear()
            window_sum, window_successes, streak, roi_streak = 0.0, 0, 0, 0
        if episode.failed:
            failed += 1
            continue
        stale = 0 < episode.phase_entry < entry  # an earlier entry's, arriving late

        point = _point(episode)
        sum_reward += point.reward
        sum_normalized += point.normalized_reward
        sum_roas += point.roas
        sum_ctr += point.ctr
        successes += int(point.success)
        spend += point.spend
        revenue += point.revenue
        budget += point.budget
        if stale:  # the phase's totals count it; the current entry's criteria do not
            continue
        # The window and its running sums (exact again at every wrap, see PhaseState).
        window.append(point)
        window_sum += point.normalized_reward
        window_successes += point.success
        if len(window) > size:
            for old in window[:-size]:
                window_sum -= old.normalized_reward
                window_successes -= old.success
            del window[:-size]
            if (count - failed) % size == 0:
                window_sum = math.fsum(p.normalized_reward for p in window)
                window_successes = sum(1 for p in window if p.success)
        if len(baseline) < baseline_size:
            baseline.append(point.normalized_reward)

        holds = (window_sum / len(window) >= reward_threshold
                 and window_successes / len(window) >= success_threshold)
        streak = streak + 1 if holds else 0
        positive_roi = point.spend > 0 and point.revenue > point.spend
        roi_streak = roi_streak + 1 if positive_roi else 0

        _add_curve_point(
            curves.setdefault(episode.task, []),
            CurvePoint(episode=count, normalized_reward=point.normalized_reward, reward=point.reward,
                       roas=point.roas, spend=point.spend, budget=point.budget),
            settings.curve_points,
        )
        state.episodes = count  # the detectors name the episode they alert at
        alerts += _detect_anomalies(run.run_id, state, episode.task, point, settings.anomaly)

    run.current_phase = phase
    run.last_policy_version = run_version
    state.episodes, state.failed_episodes = count, failed
    state.last_policy_version = version
    state.curriculum_level, state.curriculum_levels = level, levels
    state.entry, state.entered_at = entry, entered_at
    state.sum_reward, state.sum_normalized_reward, state.sum_roas, state.sum_ctr = (
        sum_reward, sum_normalized, sum_roas, sum_ctr)
    state.successes, state.total_spend, state.total_revenue, state.total_budget = (
        successes, spend, revenue, budget)
    state.window_reward_sum, state.window_successes = window_sum, window_successes
    state.consistency_streak, state.positive_roi_streak = streak, roi_streak
    return alerts


class LearnerPoint(BaseModel):
    policy_version: int
    losses: dict[str, float]
    entropy: float
    approx_kl: float
    grad_norm: float
    samples_per_second: float
    policy_lag_mean: float
    policy_lag_max: int


class LearnerState(BaseModel):
    run_id: str
    algorithm: str = ""
    dropped_stale_batches: int = 0
    trained_samples: int = 0
    history: list[LearnerPoint] = Field(default_factory=list)
    next_offsets: dict[int, int] = Field(default_factory=dict)


def apply_learner_stats(
    state: LearnerState, stats: events_pb2.LearnerStats, partition: int, offset: int, max_points: int
) -> None:
    state.next_offsets[partition] = offset + 1
    state.algorithm = stats.algorithm
    state.dropped_stale_batches = stats.dropped_stale_batches
    state.trained_samples = stats.trained_samples
    state.history.append(LearnerPoint(
        policy_version=stats.policy_version,
        losses=dict(stats.losses),
        entropy=stats.entropy,
        approx_kl=stats.approx_kl,
        grad_norm=stats.grad_norm,
        samples_per_second=stats.samples_per_second,
        policy_lag_mean=stats.policy_lag_mean,
        policy_lag_max=stats.policy_lag_max,
    ))
    del state.history[:-max_points]


class ViolationRecord(BaseModel):
    violation_id: str
    rule: str
    severity: str
    amount: float
    phase: int
    action_taken: str
    detail: str


class CampaignViolations(BaseModel):
    """Violations of one campaign in one run (table key: campaign id | run id, co-partitioned).

    The counts are of the violations the criteria count: warnings and critical ones (and any without
    a severity, the safe side). An info-severity record says what the platform did on an operator's
    order, not what the agent did (a reservation refused while an emergency stop is in force): it is
    kept in `recent` and counted in `info_by_phase`, and never fails a phase's zero-violations
    criterion."""

    campaign_id: str
    run_id: str
    info_by_phase: dict[int, int] = Field(default_factory=dict)
    count_by_phase: dict[int, int] = Field(default_factory=dict)
    critical_by_phase: dict[int, int] = Field(default_factory=dict)
    # When each violation with a time occurred (Violation.occurred_at), per phase: a phase's entry
    # counts those from its start on (entry_counts). Times before the run's current entry into the
    # phase can never count again: they leave the lists for the *_before counts (forget_before), so
    # the lists hold one entry's violations, not the whole run's.
    occurred_by_phase: dict[int, list[float]] = Field(default_factory=dict)
    critical_occurred_by_phase: dict[int, list[float]] = Field(default_factory=dict)
    before_by_phase: dict[int, int] = Field(default_factory=dict)
    critical_before_by_phase: dict[int, int] = Field(default_factory=dict)
    recent: list[ViolationRecord] = Field(default_factory=list)
    next_offsets: dict[int, int] = Field(default_factory=dict)


def apply_violation(
    state: CampaignViolations, violation: events_pb2.Violation, partition: int, offset: int, history: int
) -> None:
    state.next_offsets[partition] = offset + 1
    critical = violation.severity == events_pb2.SEVERITY_CRITICAL
    if violation.severity == events_pb2.SEVERITY_INFO:
        state.info_by_phase[violation.phase] = state.info_by_phase.get(violation.phase, 0) + 1
    else:
        state.count_by_phase[violation.phase] = state.count_by_phase.get(violation.phase, 0) + 1
    if critical:
        state.critical_by_phase[violation.phase] = state.critical_by_phase.get(violation.phase, 0) + 1
    if violation.HasField("occurred_at") and violation.severity != events_pb2.SEVERITY_INFO:
        at = violation.occurred_at.ToNanoseconds() / 1e9
        state.occurred_by_phase.setdefault(violation.phase, []).append(at)
        if critical:
            state.critical_occurred_by_phase.setdefault(violation.phase, []).append(at)
    state.recent.append(ViolationRecord(
        violation_id=violation.violation_id,
        rule=violation.rule,
        severity=events_pb2.Severity.Name(violation.severity),
        amount=violation.amount,
        phase=violation.phase,
        action_taken=violation.action_taken,
        detail=violation.detail,
    ))
    del state.recent[:-history]


def forget_before(state: CampaignViolations, phase: int, entered_at: float) -> None:
    """Move the phase's violation times before `entered_at` (the start of the run's current entry
    into it; entries only move forward) out of the lists into the *_before counts."""
    for times, before in ((state.occurred_by_phase, state.before_by_phase),
                          (state.critical_occurred_by_phase, state.critical_before_by_phase)):
        timed = times.get(phase)
        if timed and min(timed) < entered_at:
            kept = [at for at in timed if at >= entered_at]
            before[phase] = before.get(phase, 0) + len(timed) - len(kept)
            times[phase] = kept


def entry_counts(state: CampaignViolations, phase: int, entered_at: float) -> tuple[int, int]:
    """(violations, critical ones) of the phase's entry that began at `entered_at`: those that
    occurred from then on, and every one without a time (the safe side: it may be the entry's)."""
    def count(total: int, timed: list[float], before: int) -> int:
        return total - before - len(timed) + sum(1 for at in timed if at >= entered_at)

    return (count(state.count_by_phase.get(phase, 0), state.occurred_by_phase.get(phase, []),
                  state.before_by_phase.get(phase, 0)),
            count(state.critical_by_phase.get(phase, 0), state.critical_occurred_by_phase.get(phase, []),
                  state.critical_before_by_phase.get(phase, 0)))
