"""The orchestrator process moves runs between phases on what arrives over the broker.

The inputs are synthetic: the test produces GraduationAssessment and Violation messages onto the
real gaelp.assessments.v1 and gaelp.violations.v1 topics (the orchestrator's input contract), in
place of the metrics and safety-policy services, so each rule is exercised on purpose. The runs are
smoke runs (random actions, no learner), which keeps the suite light; the phase logic is the same.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
from dataplane_support import orchestrator_env, read_topic, run_status, stored_run_document, wait_until
from phase_inputs import assessment, produce

from gaelp.bus import ASSESSMENTS, RUN_EVENTS, VIOLATIONS
from gaelp.embedded.processes import ServiceProcess
from gaelp.v1 import common_pb2, events_pb2, orchestrator_pb2, orchestrator_pb2_grpc

SIM, HIST, REAL = common_pb2.PHASE_SIMULATION, common_pb2.PHASE_HISTORICAL, common_pb2.PHASE_REAL_TESTING


def start_orchestrator(bootstrap: str, tmp_path: Path, group: str) -> ServiceProcess:
    env = orchestrator_env(bootstrap, tmp_path / "runs.db", "")
    env["GAELP_ORCHESTRATOR_PHASES"] = json.dumps({"group_id": group, "last_phase": 4})
    return ServiceProcess("orchestrator", env, tmp_path / "logs").start()


def start_smoke_run(orchestrator: ServiceProcess, run_id: str) -> None:
    with grpc.insecure_channel(orchestrator.target) as channel:
        orchestrator_pb2_grpc.OrchestratorStub(channel).StartRun(orchestrator_pb2.StartRunRequest(
            run_id=run_id, config_json=json.dumps({"kind": "smoke", "episodes": 10**9})), timeout=30)


def violation(violation_id: str, run_id: str, severity: int, rule: str) -> events_pb2.Violation:
    return events_pb2.Violation(violation_id=violation_id, run_id=run_id, campaign_id="campaign-1",
                                severity=severity, phase=HIST, rule=rule)  # type: ignore[arg-type]


def history(status: orchestrator_pb2.RunStatus) -> list[tuple[int, int, str, int]]:
    return [(e.transition.from_phase, e.transition.to_phase, e.transition.reason, e.transition.policy_version)
            for e in status.phase_history]


def test_graduation_stale_assessments_demotion_and_the_dlq(kafka_bootstrap: str, tmp_path: Path,
                                                           unique_name: str) -> None:
    run_id = f"ph{unique_name}"
    group = f"phases-{unique_name}"
    orchestrator = start_orchestrator(kafka_bootstrap, tmp_path, group)
    try:
        start_smoke_run(orchestrator, run_id)
        wait_until(lambda: run_status(orchestrator, run_id).episodes > 0, 120, "phase-1 episodes",
                   logs=orchestrator.log_tail)
        # Undecodable input first: it must be dead-lettered and must not stop what follows.
        produce(kafka_bootstrap, [(ASSESSMENTS, run_id, b"\xff\xff not an assessment"),
                                  (VIOLATIONS, "campaign-x", b"\x0a\xff\xff")])
        produce(kafka_bootstrap, [(ASSESSMENTS, run_id, assessment(run_id, SIM, 5))])
        status = wait_until(lambda: (s := run_status(orchestrator, run_id)).phase == HIST and s, 60,
                            "graduation to phase 2", logs=orchestrator.log_tail)
        assert history(status) == [(SIM, HIST, "graduated: all criteria passed", 5)]
        # Same partition, in order: the stale graduation (policy 3 < 5 that entered phase 2) must
        # change nothing, so the collapse after it is the next transition.
        produce(kafka_bootstrap, [(ASSESSMENTS, run_id, assessment(run_id, HIST, 3)),
                                  (ASSESSMENTS, run_id, assessment(run_id, HIST, 6, False, demote=True))])
        status = wait_until(lambda: len((s := run_status(orchestrator, run_id)).phase_history) >= 2 and s, 60,
                            "the collapse", logs=orchestrator.log_tail)
        assert history(status)[1][:3] == (HIST, SIM, "demoted: demote: performance collapse at episode 40")
        assert len(status.phase_history) == 2 and status.phase == SIM
        # Graduate again, then a critical violation for the run demotes it (a warning does not).
        produce(kafka_bootstrap, [(ASSESSMENTS, run_id, assessment(run_id, SIM, 7))])
        wait_until(lambda: run_status(orchestrator, run_id).phase == HIST, 60, "second graduation")
        produce(kafka_bootstrap, [
            (VIOLATIONS, "campaign-1", violation("v1", run_id, events_pb2.SEVERITY_WARNING, "bid_limit")),
            (VIOLATIONS, "campaign-1", violation("v2", run_id, events_pb2.SEVERITY_CRITICAL, "daily_limit")),
        ])
        status = wait_until(lambda: len((s := run_status(orchestrator, run_id)).phase_history) >= 4 and s, 60,
                            "the violation's demotion", logs=orchestrator.log_tail)
        reason = "demoted: critical violation daily_limit on campaign campaign-1"
        assert history(status)[3][:3] == (HIST, SIM, reason)
        assert len(status.phase_history) == 4 and status.phase == SIM
        assert status.state == "running"

        # The status shows a transition as it is recorded; the store has it once the save is done.
        database = tmp_path / "runs.db"
        def stored_with_four() -> dict[str, Any] | None:
            document = stored_run_document(database, run_id)
            return document if len(document["phase_history"]) >= 4 else None

        stored = wait_until(stored_with_four, 30, "the stored history")
        assert [(t["from_phase"], t["to_phase"]) for t in stored["phase_history"]] == [
            (SIM, HIST), (HIST, SIM), (SIM, HIST), (HIST, SIM)]
        assert stored["phase_history"][0]["criteria"][0] == {
            "name": "c", "value": 0.9, "threshold": 0.5, "comparison": ">=", "passed": True}
        events = [events_pb2.RunEvent.FromString(r.value)
                  for r in read_topic(kafka_bootstrap, RUN_EVENTS.name) if r.key == run_id.encode()]
        assert [e.event_id for e in events] == [f"{run_id}:phase:{i}" for i in range(4)]
        assert [e.phase_transition.to_phase for e in events] == [HIST, SIM, HIST, SIM]
        dead = [{k: v.decode() for k, v in r.headers} for r in read_topic(kafka_bootstrap, "gaelp.dlq.v1")]
        sources = {h["dlq.source.topic"] for h in dead if h.get("dlq.consumer.group") == group}
        assert sources == {ASSESSMENTS.name, VIOLATIONS.name}
    finally:
        orchestrator.stop()


def test_sigkill_in_phase_two_resumes_in_phase_two_with_the_same_history(kafka_bootstrap: str, tmp_path: Path,
                                                                         unique_name: str) -> None:
    run_id = f"pk{unique_name}"
    group = f"phases-{unique_name}"
    orchestrator = start_orchestrator(kafka_bootstrap, tmp_path, group)
    try:
        start_smoke_run(orchestrator, run_id)
        produce(kafka_bootstrap, [(ASSESSMENTS, run_id, assessment(run_id, SIM, 4))])
        before = wait_until(lambda: (s := run_status(orchestrator, run_id)).phase == HIST and s, 120,
                            "graduation to phase 2", logs=orchestrator.log_tail)
        orchestrator.kill()
        orchestrator.process = None
        orchestrator.start()
        after = run_status(orchestrator, run_id)
        assert after.state == "running" and after.phase == HIST
        assert list(after.phase_history) == list(before.phase_history)
        # The restarted process still gates on the policy that entered phase 2 (4), then moves on.
        produce(kafka_bootstrap, [(ASSESSMENTS, run_id, assessment(run_id, HIST, 2)),
                                  (ASSESSMENTS, run_id, assessment(run_id, HIST, 4))])
        status = wait_until(lambda: (s := run_status(orchestrator, run_id)).phase == REAL and s, 60,
                            "graduation to phase 3", logs=orchestrator.log_tail)
        assert history(status) == [(SIM, HIST, "graduated: all criteria passed", 4),
                                   (HIST, REAL, "graduated: all criteria passed", 4)]
    finally:
        orchestrator.stop()
