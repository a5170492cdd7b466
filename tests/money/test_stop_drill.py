"""The demo's stop drill with real processes (sandbox, safety policy, orchestrator configured as the
embedded run configures them): once a phase-3 campaign is live, the demo operator's emergency stop
pauses it on the sandbox (its pause is in the sandbox's call log), the run waits for an approved
resume, the drill approves one, and the run's campaigns end settled or stopped with an exact
reconciliation; the latency goes to the report's emergency_stop_latency_s."""

from __future__ import annotations

from pathlib import Path

from dataplane_support import run_status, wait_until
from money_support import demo_stack

from gaelp.embedded.money_report import DemoApprover, money_document, money_report
from gaelp.embedded.stop_drill import StopDrill


def test_the_stop_drill_pauses_the_live_campaign_times_it_and_resumes_the_run(
        kafka_bootstrap: str, tmp_path: Path, unique_name: str) -> None:
    run_id = f"sd{unique_name}"
    said: list[str] = []
    # Three campaigns: room for the drill to try again when the one it saw live ends first.
    with demo_stack(tmp_path, kafka_bootstrap, f"drill-{unique_name}", run_id, campaigns=3,
                    approval_poll_s=0.2) as (money, safety, orchestrator):
        drill = StopDrill(safety.target, orchestrator.target, money.token, run_id, money.sandbox, said.append,
                          poll_s=0.1)
        with DemoApprover(safety.target, money.token, run_id, said.append, poll_s=0.2) as demo, drill:
            wait_until(lambda: drill.outcome is not None or any("stop drill failed" in s for s in said), 300,
                       "the stop drill", logs=orchestrator.log_tail)
            assert drill.outcome is not None, said
            wait_until(lambda: run_status(orchestrator, run_id).phase_work_done, 300, "phase 3's campaigns",
                       logs=orchestrator.log_tail)
        section = money_report(money_document(orchestrator.target, run_id), demo.approved, said.append,
                               drill.outcome.latency_s)
    outcome = drill.outcome
    assert outcome.paused and 0 < outcome.latency_s == section["emergency_stop_latency_s"]
    # The campaign under way when the stop came ends "stopped" (the one live may have finished its
    # last window meanwhile, and the stop then caught the next before its creation); the run's
    # phase work ended after the approved resume.
    statuses = [c["status"] for c in section["campaigns"]]
    assert "stopped" in statuses, statuses
    assert section["reconciliation"]["unreserved_cents"] == 0
    assert any("paused" in line and "after the stop" in line for line in said)
