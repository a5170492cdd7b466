"""SIGKILL of the orchestrator while a phase-3 campaign is live: the restarted process pauses and
settles that campaign without reserving again, goes on with the next ones, and at the end no
reservation of the run is left open and the reconciliation is exact."""

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

LEDGER_CAMPAIGN = "money-restart"


def live(report: dict[str, Any]) -> bool:
    return any(c["status"] == "active" and any(w["committed"] is not None for w in c["windows"])
               for c in report["campaigns"])


def test_sigkill_in_phase_3_leaves_no_reservation_twice_or_open(
        kafka_bootstrap: str, tmp_path: Path, unique_name: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAELP_OPERATOR_TOKEN", OPERATOR_TOKEN)
    sandbox = SandboxProcess(tmp_path / "logs", seed=13).start()
    safety = start_safety(tmp_path, kafka_bootstrap,
                          [{"campaign_id": LEDGER_CAMPAIGN, "daily_limit": 5000.0}],
                          {"daily_limit_max": 5000.0, "episode_limit": 5000.0, "phase_total": 50000.0})
    run_id = f"mk{unique_name}"
    seed_runs(tmp_path / "runs.db", [run_id])
    settings = {"ledger_campaigns": [LEDGER_CAMPAIGN], "campaigns": 2, "campaign_days": 5, "step_hours": 6,
                "daily_budget_min": 10.0, "daily_budget_max": 12.0}
    orchestrator = start_orchestrator(tmp_path, kafka_bootstrap, f"kill-{unique_name}", safety, sandbox,
                                      **settings)
    try:
        awaiting_approval(orchestrator, run_id)
        approve_entry(capsys, safety.target, run_id)
        with MoneyControlClient(orchestrator.target) as money:
            wait_until(lambda: live(money.report(run_id)), 120, "a live campaign with a commit", every_s=0.05)
        orchestrator.kill()
        orchestrator.process = None
        orchestrator.start()
        wait_until(lambda: run_status(orchestrator, run_id).phase_work_done, 300, "phase 3's campaigns",
                   logs=orchestrator.log_tail)
        with MoneyControlClient(orchestrator.target) as money:
            report = money.report(run_id)
    finally:
        orchestrator.stop()
        safety.stop()
        sandbox.stop()
    statuses = [c["status"] for c in report["campaigns"]]
    assert "interrupted" in statuses and statuses[-1] == "settled", statuses
    assert report["reconciliation"]["unreserved_cents"] == 0
    assert report["reconciliation"]["difference_cents"] == 0
    keys = [w["key"] for c in report["campaigns"] for w in c["windows"] if w["granted"]]
    with sqlite3.connect(tmp_path / "ledger.db") as ledger:
        rows = ledger.execute("SELECT idempotency_key, state FROM safety_reservations WHERE run_id = ?",
                              (run_id,)).fetchall()
    assert sorted(key for key, _ in rows) == sorted(keys)  # one reservation per granted window
    assert rows and all(state == "committed" for _, state in rows)  # none left open
