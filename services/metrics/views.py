"""Read models of the aggregates: the gRPC RunSummary and the window figures the gauges export."""

from __future__ import annotations

from gaelp.config.sections.metrics import MetricsSettings
from gaelp.v1 import metrics_pb2
from metrics.assessment import RunViolations, assess
from metrics.state import (
    PhaseState,
    RunState,
    episodes_to_threshold,
    mean,
    slope,
    window_reward,
    window_success_rate,
)


def window_figures(state: PhaseState) -> dict[str, float]:
    window = state.window
    clicks = sum(p.clicks for p in window)
    budget = sum(p.budget for p in window)
    return {
        "normalized_reward": window_reward(state),
        "roas": mean([p.roas for p in window]),
        "ctr": mean([p.ctr for p in window]),
        "conversion_rate": sum(p.conversions for p in window) / clicks if clicks else 0.0,
        "spend_efficiency": sum(p.spend for p in window) / budget if budget > 0 else 0.0,
        "success_rate": window_success_rate(state),
        "reward_slope": slope([p.normalized_reward for p in window]),
    }


def phase_summary(
    run: RunState, state: PhaseState, violations: RunViolations, settings: MetricsSettings
) -> metrics_pb2.PhaseSummary:
    completed = max(state.completed, 1)
    figures = window_figures(state)
    return metrics_pb2.PhaseSummary(
        phase=state.phase,  # type: ignore[arg-type]
        episodes=state.episodes,
        mean_reward=state.sum_reward / completed,
        mean_normalized_reward=state.sum_normalized_reward / completed,
        mean_roas=state.sum_roas / completed,
        mean_ctr=state.sum_ctr / completed,
        success_rate=state.successes / completed,
        total_spend=state.total_spend,
        total_revenue=state.total_revenue,
        failed_episodes=state.failed_episodes,
        violations=violations.count,
        window_normalized_reward=figures["normalized_reward"],
        window_roas=figures["roas"],
        window_ctr=figures["ctr"],
        window_conversion_rate=figures["conversion_rate"],
        window_spend_efficiency=figures["spend_efficiency"],
        window_success_rate=figures["success_rate"],
        reward_slope=figures["reward_slope"],
        episodes_to_threshold=episodes_to_threshold(state, settings.phase1.avg_normalized_reward.threshold),
        curriculum_level=state.curriculum_level,
        ready_to_graduate=assess(run, state.phase, violations, settings).ready_to_graduate,
    )


def run_summary(
    run: RunState, violations: dict[int, RunViolations], settings: MetricsSettings
) -> metrics_pb2.RunSummary:
    phases = [
        phase_summary(run, run.phases[phase], violations.get(phase, RunViolations()), settings)
        for phase in sorted(run.phases)
    ]
    return metrics_pb2.RunSummary(
        run_id=run.run_id,
        episodes=run.episodes,
        phases=phases,
        last_policy_version=run.last_policy_version,
        alerts=[alert.message for alert in run.alerts],
        current_phase=run.current_phase,  # type: ignore[arg-type]
        alert_details=[
            metrics_pb2.Alert(
                run_id=alert.run_id, phase=alert.phase,  # type: ignore[arg-type]
                metric=alert.metric, value=alert.value, expected=alert.expected, z_score=alert.z_score,
                episode_index=alert.episode_index, message=alert.message,
            )
            for alert in run.alerts
        ],
    )
