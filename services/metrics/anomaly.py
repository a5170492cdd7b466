"""Anomaly detection on the episode stream: a downward shift of a task's smoothed level, not noise.

One detector per phase, task and watched metric (all higher-is-better). A training run is not a
stationary process: the level rises as the policy learns, wobbles as each update changes the
policy, and restarts when the curriculum moves to another task. An alert therefore needs all of:

- a smoothed level: block means of anomaly.block_episodes consecutive episodes;
- scored against the task's own recent past: the median of its last reference_blocks block means;
  the noise scale is the larger of their MAD (x 1.4826, the normal-consistent factor: how much the
  level wanders between blocks) and the standard error of one block mean from the episodes'
  spread within those blocks (how noisy a block mean is: a few blocks' MAD alone can be far too
  small), floored at min_relative_std of the metric's unit; z = (block mean - median) / scale
  <= -z_threshold;
- a fall that matters, not only one that is unlikely: at least min_drop of the metric's unit
  below the median, the unit being the median itself for ROAS and CTR (a relative fall) and the
  random-to-planner span for the normalized reward (already a share of it: 0 = random play,
  1 = the planner), whose median may sit near zero where a relative fall means nothing;
- persistence: `persistence` such blocks in a row; the next alert needs a block back first;
- a warm-up on every stay on a task: when the run comes to a task (the first time, or back from
  another one), that task's detectors start afresh and score only after min_reference_blocks
  blocks. The policy arriving from another task is a different policy there; a task change is
  not an anomaly.

Breaching blocks stay out of the reference, so a collapse does not become its own yardstick.
"""

from __future__ import annotations

import math
from statistics import median
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from gaelp.config.sections.metrics import AnomalySettings
from gaelp.v1 import common_pb2

if TYPE_CHECKING:
    from metrics.state import PhaseState, WindowPoint

COLLAPSE_METRICS = ("roas", "normalized_reward")
SPAN_METRICS = frozenset({"normalized_reward"})  # measured on the yardstick's span, not relative
MAD_TO_SIGMA = 1.4826


class Alert(BaseModel):
    run_id: str
    phase: int
    metric: str
    value: float
    expected: float
    z_score: float
    episode_index: int
    message: str


class ShiftDetector(BaseModel):
    """Downward shift of one metric of one task (see the module docstring)."""

    block_sum: float = 0.0
    block_squares: float = 0.0
    block_count: int = 0
    reference: list[float] = Field(default_factory=list, description="recent block means of this stay")
    variances: list[float] = Field(default_factory=list, description="episode variance within each of them")
    breaches: int = 0
    alerted: bool = False
    last_episode: int = Field(0, description="phase episode index of the latest value folded")

    def add(self, value: float, episode_index: int, span_unit: bool,
            settings: AnomalySettings) -> tuple[float, float, float] | None:
        """Fold one value; at an alert return (block mean, reference median, z)."""
        self.last_episode = episode_index
        self.block_sum += value
        self.block_squares += value * value
        self.block_count += 1
        if self.block_count < settings.block_episodes:
            return None
        count = self.block_count
        block_mean = self.block_sum / count
        variance = max(self.block_squares / count - block_mean * block_mean, 0.0) * count / max(count - 1, 1)
        self.block_sum, self.block_squares, self.block_count = 0.0, 0.0, 0
        if len(self.reference) < settings.min_reference_blocks:
            self._remember(block_mean, variance, settings)
            return None
        center = median(self.reference)
        unit = 1.0 if span_unit else abs(center)
        wander = MAD_TO_SIGMA * median([abs(x - center) for x in self.reference])
        standard_error = math.sqrt(sum(self.variances) / len(self.variances) / count)
        z = (block_mean - center) / max(wander, standard_error, settings.min_relative_std * unit, 1e-12)
        fell = center - block_mean >= settings.min_drop * unit
        if z > -settings.z_threshold or not fell:
            self.breaches, self.alerted = 0, False
            self._remember(block_mean, variance, settings)
            return None
        self.breaches += 1
        if self.breaches < settings.persistence or self.alerted:
            return None
        self.alerted = True
        return block_mean, center, z

    def _remember(self, block_mean: float, variance: float, settings: AnomalySettings) -> None:
        self.reference.append(block_mean)
        self.variances.append(variance)
        del self.reference[:-settings.reference_blocks]
        del self.variances[:-settings.reference_blocks]


def _came_back(detectors: dict[str, dict[str, ShiftDetector]], task: str, metric: str) -> bool:
    """The run was on another task since this task's latest episode (its stay ended)."""
    mine = detectors[task][metric].last_episode
    return mine > 0 and any(other[metric].last_episode > mine
                            for name, other in detectors.items() if name != task and metric in other)


def detect_anomalies(
    run_id: str, state: PhaseState, task: str, point: WindowPoint, settings: AnomalySettings
) -> list[Alert]:
    """Fold one non-failed episode (state.episodes is its index) into the task's detectors."""
    alerts: list[Alert] = []
    detectors = state.detectors.setdefault(task, {})
    for metric in settings.metrics:
        detector = detectors.setdefault(metric, ShiftDetector())
        if _came_back(state.detectors, task, metric):
            detector = detectors[metric] = ShiftDetector()  # a new stay: forget the last one
        found = detector.add(float(getattr(point, metric)), state.episodes, metric in SPAN_METRICS, settings)
        if found is None:
            continue
        block_mean, expected, z = found
        phase_name = common_pb2.Phase.Name(common_pb2.Phase.ValueType(state.phase))
        alerts.append(Alert(
            run_id=run_id,
            phase=state.phase,
            metric=metric,
            value=block_mean,
            expected=expected,
            z_score=z,
            episode_index=state.episodes,
            message=(f"{phase_name} episode {state.episodes}: {metric} collapse on task {task!r}: "
                     f"mean {block_mean:.4g} over the last {settings.block_episodes} episodes vs "
                     f"median {expected:.4g} (robust z={z:.1f}, {settings.persistence} windows in a row)"),
        ))
        if metric in COLLAPSE_METRICS:
            state.collapse_at_episode = state.episodes
    return alerts
