"""OpenTelemetry metrics for the figures the service computes (same numbers as gRPC and the dashboard)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from gaelp.v1 import common_pb2, events_pb2

WINDOW_FIGURES = (
    "normalized_reward", "roas", "ctr", "conversion_rate", "spend_efficiency", "success_rate",
    "reward_slope",
)


class MetricsInstruments:
    """Counters/histograms per event, and observable gauges over the latest window of each run/phase."""

    def __init__(self, meter: metrics.Meter) -> None:
        self._latest: dict[tuple[str, str], dict[str, float]] = {}
        self._episode_attributes: dict[tuple[int, str], dict[str, str]] = {}
        self.episodes = meter.create_counter("gaelp.metrics.episodes", description="episodes consumed")
        self.failed = meter.create_counter("gaelp.metrics.episodes.failed", description="failed episodes")
        # A gauge, not a histogram: normalized reward is negative below random play, and
        # OpenTelemetry histograms drop negative values.
        self.reward = meter.create_gauge(
            "gaelp.metrics.episode.normalized_reward", description="latest episode's normalized reward"
        )
        self.roas = meter.create_histogram("gaelp.metrics.episode.roas")
        self.alerts = meter.create_counter("gaelp.metrics.alerts", description="anomaly alerts raised")
        self.violations = meter.create_counter("gaelp.metrics.violations")
        self.dead_lettered = meter.create_counter("gaelp.metrics.dead_lettered")
        self.learner_entropy = meter.create_histogram("gaelp.metrics.learner.entropy")
        self.learner_policy_lag = meter.create_histogram("gaelp.metrics.learner.policy_lag_mean")
        for figure in WINDOW_FIGURES:
            meter.create_observable_gauge(
                f"gaelp.metrics.window.{figure}", callbacks=[self._observer(figure)]
            )
        meter.create_observable_gauge(
            "gaelp.metrics.graduation.ready", callbacks=[self._observer("ready")],
            description="1 when the latest assessment of the run/phase passed every criterion",
        )

    def _observer(self, figure: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            return [
                Observation(values[figure], {"run_id": run_id, "phase": phase})
                for (run_id, phase), values in list(self._latest.items())
                if figure in values
            ]

        return observe

    def record_episodes(self, episodes: Sequence[events_pb2.EpisodeSummary]) -> None:
        """A batch's episodes: one counter add per phase and task (an add costs as much as a fold)."""
        counts: dict[tuple[int, str], list[int]] = {}
        latest: dict[tuple[int, str], float] = {}
        for episode in episodes:
            key = (int(episode.phase), episode.task)
            count = counts.setdefault(key, [0, 0])
            count[0] += 1
            if episode.failed:
                count[1] += 1
                continue
            latest[key] = episode.normalized_reward
            self.roas.record(episode.roas, self._attributes(key))
        for counted, (total, failed) in counts.items():
            attributes = self._attributes(counted)
            self.episodes.add(total, attributes)
            if failed:
                self.failed.add(failed, attributes)
            if counted in latest:
                self.reward.set(latest[counted], attributes)

    def _attributes(self, key: tuple[int, str]) -> dict[str, str]:
        found = self._episode_attributes.get(key)
        if found is None:
            phase, task = key
            found = self._episode_attributes[key] = {
                "phase": common_pb2.Phase.Name(common_pb2.Phase.ValueType(phase)), "task": task,
            }
        return found

    def record_window(self, run_id: str, phase: int, figures: dict[str, float]) -> None:
        self._latest[(run_id, common_pb2.Phase.Name(common_pb2.Phase.ValueType(phase)))] = figures

    def record_alert(self, phase: int, metric: str) -> None:
        phase_name = common_pb2.Phase.Name(common_pb2.Phase.ValueType(phase))
        self.alerts.add(1, {"phase": phase_name, "metric": metric})

    def record_violation(self, violation: events_pb2.Violation) -> None:
        self.violations.add(1, {"phase": common_pb2.Phase.Name(violation.phase),
                                "severity": events_pb2.Severity.Name(violation.severity)})

    def record_learner(self, stats: events_pb2.LearnerStats) -> None:
        self.learner_entropy.record(stats.entropy, {"algorithm": stats.algorithm})
        self.learner_policy_lag.record(stats.policy_lag_mean, {"algorithm": stats.algorithm})
