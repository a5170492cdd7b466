"""The embedded run's phase 4 with real processes, configured the way the embedded run configures
it: the demo's ledger limits hold five campaigns at once with their step-ups (nothing refused,
every approved step taking effect at the ledger), and the demo operator approves each
budget_increase and says so with its amount."""

from __future__ import annotations

from pathlib import Path

from dataplane_support import run_status, wait_until
from money_support import demo_stack

from gaelp.embedded.money_report import DEMO_OPERATOR, DemoApprover, money_document, money_report
from gaelp.v1 import common_pb2

SCALED = common_pb2.PHASE_SCALED


def test_demo_limits_hold_phase_4_and_the_demo_operator_approves_its_step_ups(
        kafka_bootstrap: str, tmp_path: Path, unique_name: str) -> None:
    run_id = f"m4{unique_name}"
    said: list[str] = []
    # Two-day campaigns leave room for step-ups; a small transfer budget keeps the test short.
    with demo_stack(tmp_path, kafka_bootstrap, f"demo4-{unique_name}", run_id, phase=SCALED, campaign_days=2,
                    transfer={"env_steps": 1536, "evaluation_envs": 8}) as (money, safety, orchestrator):
        with DemoApprover(safety.target, money.token, run_id, said.append, poll_s=0.2) as demo:
            wait_until(lambda: run_status(orchestrator, run_id).phase_work_done, 300, "phase 4's campaigns",
                       logs=orchestrator.log_tail)
        section = money_report(money_document(orchestrator.target, run_id), demo.approved, said.append)
    campaigns = section["campaigns"]
    assert len(campaigns) == 5 and {c["phase"] for c in campaigns} == {SCALED}
    assert [c["status"] for c in campaigns] == ["settled"] * 5, section["violations"]
    assert section["violations"] == []
    assert section["reconciliation"]["unreserved_cents"] == 0
    assert section["reconciliation"]["difference_cents"] == 0
    steps = [a for a in section["approvals"] if a["kind"] == "budget_increase"]
    assert steps, "no campaign's level was sustained: no step-up was asked"
    # Approved by the demo operator and grown at the ledger by its amount (else it reads rejected).
    assert all(a["status"] == "approved" and a["by"] == DEMO_OPERATOR for a in steps), steps
    # Each approved raise reached the campaign in its next window.
    by_index = {c["index"]: c for c in campaigns}
    for step in steps:
        attempt, index, levels = step["subject"].split(":")
        assert attempt == "a1"
        campaign = by_index[int(index.removeprefix("c"))]
        assert campaign["limits"]["daily_budget_max"] >= float(levels.split("->")[1]), step
    announced = [line for line in said if "approved budget_increase" in line and "/day on the ledger" in line]
    assert len(announced) == len(steps), said
    assert section["transfer"]["products"] == [c["product"] for c in campaigns if c["transfer"]]
