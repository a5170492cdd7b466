"""The phase machine's rules, one by one, on hand-made assessments and violations."""

from __future__ import annotations

from gaelp.config.sections.orchestrator import PhaseSettings
from gaelp.v1 import common_pb2, events_pb2
from orchestrator.phases import COMPLETED, PhaseMachine

RUN = "run-a"


def assessment(phase: int, version: int, ready: bool = True, demote: bool = False,
               passed: tuple[bool, ...] = (True, True)) -> events_pb2.GraduationAssessment:
    return events_pb2.GraduationAssessment(
        run_id=RUN, phase=phase, policy_version=version, ready_to_graduate=ready, demote=demote,  # type: ignore[arg-type]
        reason="demote: performance collapse" if demote else "all criteria passed",
        criteria=[events_pb2.CriterionResult(name=f"c{i}", value=1.0, threshold=0.5, comparison=">=",
                                             passed=p) for i, p in enumerate(passed)],
    )


def violation(severity: int, phase: int, run_id: str = RUN, campaign: str = "") -> events_pb2.Violation:
    return events_pb2.Violation(run_id=run_id, campaign_id=campaign, severity=severity,  # type: ignore[arg-type]
                                phase=phase, rule="daily_limit")  # type: ignore[arg-type]


def test_graduates_only_on_a_passing_assessment_of_its_phase_and_a_new_enough_policy() -> None:
    machine = PhaseMachine(PhaseSettings(last_phase=4), RUN, common_pb2.PHASE_SIMULATION, 4)
    assert machine.on_assessment(assessment(common_pb2.PHASE_SIMULATION, 3), 6) is None  # older policy
    assert machine.on_assessment(assessment(common_pb2.PHASE_HISTORICAL, 9), 9) is None  # other phase
    assert machine.on_assessment(assessment(common_pb2.PHASE_SIMULATION, 9, ready=False), 9) is None
    assert machine.on_assessment(assessment(common_pb2.PHASE_SIMULATION, 9, passed=(True, False)), 9) is None
    other = assessment(common_pb2.PHASE_SIMULATION, 9)
    other.run_id = "run-b"
    assert machine.on_assessment(other, 9) is None
    transition = machine.on_assessment(assessment(common_pb2.PHASE_SIMULATION, 5), 7)
    assert transition is not None
    assert (transition.from_phase, transition.to_phase, transition.policy_version) == (1, 2, 7)
    assert [c.name for c in transition.criteria] == ["c0", "c1"]
    assert (machine.phase, machine.entry_policy_version) == (2, 7)
    assert machine.on_assessment(assessment(common_pb2.PHASE_HISTORICAL, 6), 8) is None  # before entry


def test_graduating_from_the_last_enabled_phase_completes_the_run() -> None:
    machine = PhaseMachine(PhaseSettings(last_phase=2), RUN, common_pb2.PHASE_HISTORICAL, 0)
    transition = machine.on_assessment(assessment(common_pb2.PHASE_HISTORICAL, 1), 1)
    assert transition is not None and transition.completes_run and transition.to_phase == COMPLETED
    assert machine.phase == common_pb2.PHASE_HISTORICAL


def test_demotes_on_collapse_and_on_a_critical_violation_to_the_configured_phase() -> None:
    settings = PhaseSettings(last_phase=4, demote_to={1: 1, 2: 1, 3: 1, 4: 3})
    machine = PhaseMachine(settings, RUN, common_pb2.PHASE_REAL_TESTING, 10)
    # A collapse demotes whatever the policy version of the assessment.
    collapse = assessment(common_pb2.PHASE_REAL_TESTING, 2, ready=False, demote=True)
    transition = machine.on_assessment(collapse, 11)
    assert transition is not None and (transition.to_phase, transition.reason) == (
        1, "demoted: demote: performance collapse")
    machine = PhaseMachine(settings, RUN, common_pb2.PHASE_SCALED, 10)
    assert machine.on_violation(violation(events_pb2.SEVERITY_WARNING, 4), (), 10) is None
    assert machine.on_violation(violation(events_pb2.SEVERITY_CRITICAL, 3), (), 10) is None  # a left phase
    assert machine.on_violation(violation(events_pb2.SEVERITY_CRITICAL, 4, run_id="x", campaign="c9"),
                                ("c1",), 10) is None
    transition = machine.on_violation(violation(events_pb2.SEVERITY_CRITICAL, 4, run_id="", campaign="c1"),
                                      ("c1",), 12)
    assert transition is not None and transition.to_phase == 3 and "campaign c1" in transition.reason
    assert (machine.phase, machine.entry_policy_version) == (3, 12)


def test_phase_one_never_demotes() -> None:
    machine = PhaseMachine(PhaseSettings(), RUN, common_pb2.PHASE_SIMULATION, 0)
    assert machine.on_assessment(assessment(common_pb2.PHASE_SIMULATION, 1, demote=True), 1) is None
    assert machine.on_violation(violation(events_pb2.SEVERITY_CRITICAL, 1), (), 1) is None
