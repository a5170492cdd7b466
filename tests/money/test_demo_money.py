"""The embedded run's money wiring with real processes: the sandbox and the demo operator of one
run (its token made for the run), the safety policy and orchestrator configured the way the
embedded run configures them; the demo operator approves the phase-3 entry and says so, and the
report's money keys come from the orchestrator."""

from __future__ import annotations

from pathlib import Path

from dataplane_support import run_status, wait_until
from money_support import demo_stack

from gaelp.embedded.money_report import DEMO_OPERATOR, DemoApprover, money_document, money_report


def test_demo_operator_approves_and_the_report_reconciles(kafka_bootstrap: str, tmp_path: Path,
                                                          unique_name: str) -> None:
    run_id = f"md{unique_name}"
    said: list[str] = []
    with demo_stack(tmp_path, kafka_bootstrap, f"demo-{unique_name}", run_id, campaigns=2) as (
            money, safety, orchestrator):
        with DemoApprover(safety.target, money.token, run_id, said.append, poll_s=0.2) as demo:
            wait_until(lambda: run_status(orchestrator, run_id).phase_work_done, 300, "phase 3's campaigns",
                       logs=orchestrator.log_tail)
        section = money_report(money_document(orchestrator.target, run_id), demo.approved, said.append)
    assert [(a["kind"], a["by"]) for a in section["approvals"]] == [("enter_phase_3", DEMO_OPERATOR)]
    assert any(f"as the demo operator '{DEMO_OPERATOR}'" in line for line in said)
    assert section["reconciliation"]["unreserved_cents"] == 0
    assert section["reconciliation"]["platform_spend"] > 0
    campaigns = section["campaigns"]
    assert len(campaigns) == 2 and all(c["committed"] <= c["reserved"] for c in campaigns)
    # The demo's limits hold every window of its campaigns, the one still open while the next
    # reserves included (reports lag): a campaign runs its course, nothing is refused.
    assert [c["status"] for c in campaigns] == ["settled", "settled"], section["violations"]
    assert section["violations"] == []
    assert any("cents unreserved" in line for line in said)
