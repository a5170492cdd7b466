"""The emergency stop with real processes: `gaelp stop` blocks every reservation at the safety
policy and pauses every money-phase campaign on the sandbox; nothing spends after it; the run waits
in awaiting_approval until an operator approves the resume, then finishes its campaigns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dataplane_support import run_status, wait_until
from money_support import (
    OPERATOR_TOKEN,
    REAL,
    approve_entry,
    awaiting_approval,
    cli,
    seed_runs,
    start_orchestrator,
    start_safety,
)

from gaelp.client.money import MoneyControlClient
from gaelp.sim.platform.process import SandboxProcess

LEDGER_CAMPAIGN = "money-stop"


def live_campaigns(report: dict[str, Any]) -> list[str]:
    return [c["campaign_id"] for c in report["campaigns"] if c["status"] == "active"]


def test_emergency_stop_pauses_everything_until_an_approved_resume(
        kafka_bootstrap: str, tmp_path: Path, unique_name: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAELP_OPERATOR_TOKEN", OPERATOR_TOKEN)
    sandbox = SandboxProcess(tmp_path / "logs", seed=11).start()
    # Long campaigns (20 platform days each) so that the stop lands while one is live; the sandbox
    # packs those days into one real day, so the ledger's per-day limits are set to hold them.
    safety = start_safety(tmp_path, kafka_bootstrap,
                          [{"campaign_id": LEDGER_CAMPAIGN, "daily_limit": 5000.0}],
                          {"daily_limit_max": 5000.0, "episode_limit": 5000.0, "phase_total": 50000.0})
    run_id = f"ms{unique_name}"
    seed_runs(tmp_path / "runs.db", [run_id])
    orchestrator = start_orchestrator(
        tmp_path, kafka_bootstrap, f"stop-{unique_name}", safety, sandbox, ledger_campaigns=[LEDGER_CAMPAIGN],
        campaigns=2, campaign_days=20, step_hours=6, daily_budget_min=10.0, daily_budget_max=12.0)
    targets = ("--safety-policy", safety.target, "--orchestrator", orchestrator.target)
    try:
        awaiting_approval(orchestrator, run_id)
        approve_entry(capsys, safety.target, run_id)
        with MoneyControlClient(orchestrator.target) as money:
            live = wait_until(lambda: live_campaigns(money.report(run_id)), 120, "a live campaign",
                              every_s=0.05, logs=orchestrator.log_tail)
            stopped = cli(capsys, "stop", "--reason", "drill", *targets)
            assert stopped["stopped"] and set(live) <= set(stopped["paused_campaign_ids"])
            status = wait_until(lambda: (s := run_status(orchestrator, run_id)).state == "awaiting_approval"
                                and "emergency stop" in s.detail and s, 60, "the run to wait for the resume",
                                logs=orchestrator.log_tail)
            assert status.phase == REAL
            assert live_campaigns(money.report(run_id)) == []
            # Nothing spends after the stop: a platform day later the spend log has not moved.
            before = sandbox.tool("sandbox_spend_log")["campaigns"]
            sandbox.tool("sandbox_advance_time", {"hours": 24})
            after = sandbox.tool("sandbox_spend_log")["campaigns"]
            assert {c: sum(d.values()) for c, d in after.items()} == pytest.approx(
                {c: sum(d.values()) for c, d in before.items()})
            budget = cli(capsys, "budget", "status", "--campaign", LEDGER_CAMPAIGN,
                         "--safety-policy", safety.target)
            assert budget["emergency_stopped"]

            resume = cli(capsys, "stop", "--resume", "--reason", "drill over", *targets)
            cli(capsys, "approvals", "approve", resume["approval_id"], "--safety-policy", safety.target)
            wait_until(lambda: run_status(orchestrator, run_id).phase_work_done, 300,
                       "the remaining campaigns", logs=orchestrator.log_tail)
            report = money.report(run_id)
    finally:
        orchestrator.stop()
        safety.stop()
        sandbox.stop()
    statuses = [c["status"] for c in report["campaigns"]]
    assert "stopped" in statuses and statuses[-1] == "settled"
    assert report["reconciliation"]["unreserved_cents"] == 0
    assert report["reconciliation"]["difference_cents"] == 0
