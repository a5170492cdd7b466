"""Graduation assessment: each criterion of the phase (from settings) against the run's aggregates.

A phase is assessed on its current entry (EpisodeSummary.phase_entry; a run demoted out of a phase
and graduated back into it enters it anew): the window, the streaks and the violations counted are
that entry's, and the assessment names the entry (GraduationAssessment.phase_entry) so that the
orchestrator ignores one about an earlier entry. Phase 1's improvement baseline is the phase's first
episodes ever (where the policy started), phase 4's the phase-3 state's current window.

Figures (window = the last metrics.window_episodes non-failed episodes of the phase's entry):
  phase 1: avg_normalized_reward = window mean; success_rate = window share of successes;
           improvement = (window mean - baseline mean) / |baseline mean|, baseline = the phase's first
           baseline_episodes episodes; consistency = consecutive latest episodes after which both the
           reward and success criteria held; final_curriculum_level = curriculum_levels - highest level
           reached (1 when the episodes carry no curriculum).
  phase 2: window means of historical_match, prediction_accuracy, prediction_correlation.
  phase 3: consecutive_positive_roi = streak of episodes with revenue > spend; roi = window
           (revenue - spend) / spend; budget_efficiency = window spend / budget; violations = count in
           the phase's entry (those that occurred since it began, entry_violations) of warning and
           critical severity; info records (a reservation refused under an operator's emergency stop)
           are the operator's doing, not the agent's, and are not counted.
  phase 4: sustained_improvement = (window mean normalized reward - baseline) / |baseline|, baseline =
           the phase-3 window's mean normalized reward (the level the run graduated to scale with; money
           episodes' normalized reward is their ROI), or phase 1's baseline rule when the run has no
           phase-3 episodes; multi_campaign_success = window success rate;
           transfer_effectiveness = over the window's transfer episodes, mean score of the policy
           fine-tuned from phase 3's on the held-out products / mean score of the one trained from scratch
           on the same env steps (the normalized reward on the simulator's model of those products, carried
           by each transfer episode); 0 without transfer episodes or when the scratch policy does not
           beat random play there (the ratio then says nothing).
A phase graduates when every criterion passes. It demotes on a critical violation in the entry or a
downward ROAS/reward anomaly within the current window (anomaly.demote_on_collapse).
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp

from gaelp.config.sections.metrics import Criterion, MetricsSettings
from gaelp.v1 import common_pb2, events_pb2
from metrics.state import (
    CampaignViolations,
    PhaseState,
    RunState,
    entry_counts,
    mean,
    window_reward,
    window_success_rate,
)


@dataclass(frozen=True)
class RunViolations:
    """Violation counts of one run in one phase's current entry (summed over its campaigns)."""

    count: int = 0
    critical: int = 0


def entry_violations(campaigns: list[CampaignViolations], phase: int, entered_at: float) -> RunViolations:
    """The run's violations of the phase's entry that began at `entered_at` (PhaseState.entered_at)."""
    counts = [entry_counts(campaign, phase, entered_at) for campaign in campaigns]
    return RunViolations(count=sum(c for c, _ in counts), critical=sum(c for _, c in counts))


def _result(name: str, value: float, criterion: Criterion) -> events_pb2.CriterionResult:
    passed = value >= criterion.threshold if criterion.comparison == ">=" else value <= criterion.threshold
    return events_pb2.CriterionResult(
        name=name, value=value, threshold=criterion.threshold, comparison=criterion.comparison, passed=passed
    )


def _relative_change(value: float, baseline: float) -> float:
    return (value - baseline) / max(abs(baseline), 1e-9)


def improvement(state: PhaseState) -> float:
    if not state.baseline:
        return 0.0
    return _relative_change(window_reward(state), mean(state.baseline))


def sustained_improvement(state: PhaseState, graduated: PhaseState | None) -> float:
    """Phase 4's window against the phase-3 level it scaled up from."""
    if graduated is None or not graduated.window:
        return improvement(state)
    return _relative_change(window_reward(state), window_reward(graduated))


def _transfer_effectiveness(state: PhaseState) -> float:
    transfer = [p for p in state.window if p.transfer]
    scratch = mean([p.transfer_scratch_score for p in transfer])
    if not transfer or scratch <= 0:
        return 0.0
    return mean([p.transfer_fine_tuned_score for p in transfer]) / scratch


def criteria_results(
    state: PhaseState, violations: RunViolations, settings: MetricsSettings,
    graduated: PhaseState | None = None,
) -> list[events_pb2.CriterionResult]:
    """graduated: phase 3's state, phase 4's baseline."""
    window = state.window
    if state.phase == common_pb2.PHASE_SIMULATION:
        c1 = settings.phase1
        # Episodes that carry no curriculum never prove the final level was reached.
        levels_to_go = state.curriculum_levels - state.curriculum_level if state.curriculum_levels else 1
        return [
            _result("avg_normalized_reward", window_reward(state), c1.avg_normalized_reward),
            _result("success_rate", window_success_rate(state), c1.success_rate),
            _result("improvement", improvement(state), c1.improvement),
            _result("consistency", float(state.consistency_streak), c1.consistency),
            _result("final_curriculum_level", float(max(levels_to_go, 0)), c1.final_curriculum_level),
        ]
    if state.phase == common_pb2.PHASE_HISTORICAL:
        c2 = settings.phase2
        return [
            _result("historical_match", mean([p.historical_match for p in window]), c2.historical_match),
            _result("prediction_accuracy", mean([p.prediction_accuracy for p in window]),
                    c2.prediction_accuracy),
            _result("correlation", mean([p.prediction_correlation for p in window]), c2.correlation),
        ]
    if state.phase == common_pb2.PHASE_REAL_TESTING:
        c3 = settings.phase3
        spend = sum(p.spend for p in window)
        budget = sum(p.budget for p in window)
        roi = (sum(p.revenue for p in window) - spend) / spend if spend > 0 else 0.0
        return [
            _result("consecutive_positive_roi", float(state.positive_roi_streak),
                    c3.consecutive_positive_roi),
            _result("roi", roi, c3.roi),
            _result("budget_efficiency", spend / budget if budget > 0 else 0.0, c3.budget_efficiency),
            _result("violations", float(violations.count), c3.violations),
        ]
    if state.phase == common_pb2.PHASE_SCALED:
        c4 = settings.phase4
        return [
            _result("sustained_improvement", sustained_improvement(state, graduated),
                    c4.sustained_improvement),
            _result("multi_campaign_success", window_success_rate(state), c4.multi_campaign_success),
            _result("transfer_effectiveness", _transfer_effectiveness(state), c4.transfer_effectiveness),
        ]
    raise ValueError(f"no graduation criteria for phase {state.phase}")


def assess(
    run: RunState, phase: int, violations: RunViolations, settings: MetricsSettings
) -> events_pb2.GraduationAssessment:
    state = run.phases[phase]
    criteria = criteria_results(state, violations, settings, run.phases.get(common_pb2.PHASE_REAL_TESTING))
    failing = [c.name for c in criteria if not c.passed]
    window_start = state.episodes - len(state.window)
    collapsed = (settings.anomaly.demote_on_collapse and state.collapse_at_episode > 0
                 and state.collapse_at_episode > window_start)
    demote_reasons = []
    if violations.critical:
        demote_reasons.append(f"{violations.critical} critical violation(s) in the phase's entry")
    if collapsed:
        demote_reasons.append(f"performance collapse at episode {state.collapse_at_episode}")
    ready = not failing and not demote_reasons
    if demote_reasons:
        reason = "demote: " + "; ".join(demote_reasons)
    elif failing:
        reason = "not yet: " + ", ".join(failing)
    else:
        reason = "all criteria passed"
    assessed_at = Timestamp()
    assessed_at.GetCurrentTime()
    return events_pb2.GraduationAssessment(
        run_id=run.run_id,
        phase=phase,  # type: ignore[arg-type]
        criteria=criteria,
        ready_to_graduate=ready,
        demote=bool(demote_reasons),
        reason=reason,
        episodes_considered=len(state.window),
        assessed_at=assessed_at,
        policy_version=state.last_policy_version,  # the newest policy among the phase's episodes
        phase_entry=state.entry,
    )
