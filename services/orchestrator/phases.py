"""The phase machine: when a run moves between phases 1 (simulation), 2 (historical), 3 (real
testing) and 4 (scaled). A pure core: it reads assessments and violations and answers with the
transition to make, or None; the run manager records, saves and publishes what it answers.

Rules:
- graduate from phase P to P + 1 on a GraduationAssessment for the run and for phase P whose
  policy_version is at least the policy version that entered P, with ready_to_graduate set and
  every criterion passing. Graduating from `last_phase` (a setting) completes the run instead of
  entering a phase that is not enabled (to_phase is then PHASE_UNSPECIFIED).
- demote from P to demote_to[P] (a setting) on an assessment for the run and phase P with the
  demote flag (performance collapse, or critical violations the metrics counted), whatever its
  policy version: a collapse is never stale news about money at risk.
- demote likewise on a critical Violation for the run or one of its campaigns, raised in phase P
  (or with no phase); violations of a phase the run has already left are history, not news, and so
  are those that occurred before the current entry into P began (an earlier entry's, redelivered).
- assessments are about one entry of the phase (GraduationAssessment.phase_entry, 1 = the first):
  one about an earlier entry than the current one changes nothing (0: the producer did not say).
- a phase whose demotion target is itself never demotes (phase 1 has nowhere to go).
- anything for another run or another phase changes nothing.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from gaelp.config.sections.orchestrator import PhaseSettings
from gaelp.v1 import common_pb2, events_pb2
from orchestrator.run_document import FIRST_ENTRY, PhaseEntry

COMPLETED = common_pb2.PHASE_UNSPECIFIED  # to_phase of a graduation from the last enabled phase


@dataclass(frozen=True)
class CriterionFigure:
    name: str
    value: float
    threshold: float
    comparison: str
    passed: bool


@dataclass(frozen=True)
class Transition:
    from_phase: int
    to_phase: int
    reason: str
    criteria: tuple[CriterionFigure, ...]
    policy_version: int

    @property
    def completes_run(self) -> bool:
        return self.to_phase == COMPLETED


def phase_name(phase: int) -> str:
    return common_pb2.Phase.Name(phase).removeprefix("PHASE_").lower()  # type: ignore[arg-type]


def _figures(assessment: events_pb2.GraduationAssessment) -> tuple[CriterionFigure, ...]:
    return tuple(CriterionFigure(c.name, c.value, c.threshold, c.comparison, c.passed)
                 for c in assessment.criteria)


class PhaseMachine:
    """One run's phase: the current phase, its entry and the policy version that entered it. The run
    manager sets `entry` (RunDocument.phase_entry) once each transition is recorded."""

    def __init__(self, settings: PhaseSettings, run_id: str, phase: int, entry_policy_version: int,
                 entry: PhaseEntry = FIRST_ENTRY) -> None:
        self.settings = settings
        self.run_id = run_id
        self.phase = phase
        self.entry_policy_version = entry_policy_version
        self.entry = entry

    def on_assessment(self, assessment: events_pb2.GraduationAssessment,
                      current_policy_version: int) -> Transition | None:
        if assessment.run_id != self.run_id or assessment.phase != self.phase:
            return None
        if 0 < assessment.phase_entry < self.entry.attempt:
            return None  # figures of an earlier entry into the phase (its episodes, its violations)
        if assessment.demote:
            return self._demote(f"demoted: {assessment.reason}", _figures(assessment), current_policy_version)
        if assessment.policy_version < self.entry_policy_version:
            return None  # assessed on episodes of a policy older than the one that entered the phase
        if not assessment.ready_to_graduate or not assessment.criteria:
            return None
        if not all(criterion.passed for criterion in assessment.criteria):
            return None
        target = COMPLETED if self.phase >= self.settings.last_phase else self.phase + 1
        return self._move(target, f"graduated: {assessment.reason}", _figures(assessment),
                          max(assessment.policy_version, current_policy_version))

    def on_violation(self, violation: events_pb2.Violation, campaign_ids: Collection[str],
                     current_policy_version: int) -> Transition | None:
        if violation.severity != events_pb2.SEVERITY_CRITICAL:
            return None
        if violation.run_id != self.run_id and violation.campaign_id not in campaign_ids:
            return None
        if violation.phase not in (common_pb2.PHASE_UNSPECIFIED, self.phase):
            return None
        occurred = violation.occurred_at.ToNanoseconds() / 1e9 if violation.HasField("occurred_at") else None
        if occurred is not None and occurred < self.entry.entered_at:
            return None  # an earlier entry's violation (it demoted that entry already)
        where = f" on campaign {violation.campaign_id}" if violation.campaign_id else ""
        reason = f"demoted: critical violation {violation.rule}{where}"
        return self._demote(reason, (), current_policy_version)

    def _demote(self, reason: str, criteria: tuple[CriterionFigure, ...],
                policy_version: int) -> Transition | None:
        target = self.settings.demote_to.get(self.phase, self.phase)
        if target == self.phase:
            return None
        return self._move(target, reason, criteria, policy_version)

    def _move(self, target: int, reason: str, criteria: tuple[CriterionFigure, ...],
              policy_version: int) -> Transition:
        transition = Transition(self.phase, target, reason, criteria, policy_version)
        if target != COMPLETED:
            self.phase = target
            self.entry_policy_version = policy_version
        return transition
