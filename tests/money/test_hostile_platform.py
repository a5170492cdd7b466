"""A platform that answers errors (past the connector's retries) and malformed reports in the middle
of a phase-3 campaign: the campaign ends as failed with the reason in its record and a log line, the
run goes on with its next campaign, and the ledger stays consistent with the platform."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from dataplane_support import run_status, wait_until
from money_support import (
    OPERATOR_TOKEN,
    approve_entry,
    awaiting_approval,
    seed_runs,
    start_orchestrator,
    start_safety,
)

from gaelp.client.money import MoneyControlClient
from gaelp.sim.platform.process import SandboxProcess

LEDGER_CAMPAIGN = "money-hostile"


def committed_live(report: dict[str, Any]) -> bool:
    return any(c["status"] == "active" and any(w["committed"] is not None for w in c["windows"])
               for c in report["campaigns"])


def test_errors_and_malformed_reports_leave_the_ledger_consistent(
        kafka_bootstrap: str, tmp_path: Path, unique_name: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAELP_OPERATOR_TOKEN", OPERATOR_TOKEN)
    sandbox = SandboxProcess(tmp_path / "logs", seed=17).start()
    safety = start_safety(tmp_path, kafka_bootstrap,
                          [{"campaign_id": LEDGER_CAMPAIGN, "daily_limit": 5000.0}],
                          {"daily_limit_max": 5000.0, "episode_limit": 5000.0, "phase_total": 50000.0})
    run_id = f"mh{unique_name}"
    seed_runs(tmp_path / "runs.db", [run_id])
    orchestrator = start_orchestrator(tmp_path, kafka_bootstrap, f"hostile-{unique_name}", safety, sandbox,
                                      ledger_campaigns=[LEDGER_CAMPAIGN], campaigns=2, campaign_days=4,
                                      daily_budget_min=10.0, daily_budget_max=12.0)
    try:
        awaiting_approval(orchestrator, run_id)
        approve_entry(capsys, safety.target, run_id)
        with MoneyControlClient(orchestrator.target) as money:
            wait_until(lambda: committed_live(money.report(run_id)), 120, "a live campaign", every_s=0.05)
            # Five failing operations: one operation's four attempts, then the next one's first.
            sandbox.tool("sandbox_fail_next", {"calls": 5})
            sandbox.tool("sandbox_malform_next_reports", {"calls": 2})
            wait_until(lambda: run_status(orchestrator, run_id).phase_work_done, 300, "phase 3's campaigns",
                       logs=orchestrator.log_tail)
            report = money.report(run_id)
            status = run_status(orchestrator, run_id)
    finally:
        orchestrator.stop()
        safety.stop()
        sandbox.stop()
    assert status.state == "running" and status.phase_work_done
    first, second = report["campaigns"]
    assert first["status"] == "failed" and first["detail"].startswith("platform failed")
    assert second["status"] == "settled"
    assert "platform failed during a phase-3 campaign" in orchestrator.log_path.read_text()
    assert report["reconciliation"]["unreserved_cents"] == 0
    assert report["reconciliation"]["difference_cents"] == 0
    with sqlite3.connect(tmp_path / "ledger.db") as ledger:
        states = ledger.execute("SELECT state FROM safety_reservations WHERE run_id = ?",
                                (run_id,)).fetchall()
    assert states and {state for (state,) in states} == {"committed"}
