"""Re-entering phase 3 after a demotion, with real processes (sandbox, safety policy, orchestrator,
broker; the phase inputs are synthetic, produced onto the real topics in place of the metrics and
safety-policy services).

A run in phase 3 gets a critical violation while its first campaign is live: it demotes to phase 2,
its campaign runs to its end and no other starts. Graduated back into phase 3, it enters the phase a
second time: its campaigns are new ones (attempt 2) with reservation keys and platform campaigns of
their own, none reserved twice; an assessment about the first entry and the first entry's violation
redelivered move it nowhere; its episodes name the new entry, so the metrics service's fold of what
the orchestrator published assesses phase 3 on the new entry only.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from dataplane_support import read_topic, run_status, wait_until
from google.protobuf.timestamp_pb2 import Timestamp
from money_support import (
    HIST,
    OPERATOR_TOKEN,
    REAL,
    approve_entry,
    awaiting_approval,
    seed_runs,
    start_orchestrator,
    start_safety,
)
from phase_inputs import assessment, produce

from gaelp.bus import ASSESSMENTS, EPISODES, VIOLATIONS
from gaelp.client.money import MoneyControlClient
from gaelp.config.sections.metrics import MetricsSettings
from gaelp.sim.platform.process import SandboxProcess
from gaelp.v1 import events_pb2
from metrics.assessment import assess, entry_violations
from metrics.state import CampaignViolations, RunState, apply_episodes, apply_violation

LEDGER_CAMPAIGN = "money-reentry"


def live(report: dict[str, Any]) -> bool:
    return any(c["status"] == "active" for c in report["campaigns"])


def critical_violation(run_id: str, at: float) -> events_pb2.Violation:
    occurred_at = Timestamp()
    occurred_at.FromNanoseconds(int(at * 1e9))
    return events_pb2.Violation(
        violation_id=f"{run_id}-overspend", run_id=run_id, campaign_id=LEDGER_CAMPAIGN,
        rule="spend_above_reservation", severity=events_pb2.SEVERITY_CRITICAL, phase=REAL,  # type: ignore[arg-type]
        action_taken="paused", detail="synthetic: spend above the window's reservation",
        occurred_at=occurred_at)


def test_a_run_demoted_from_phase_3_reenters_it_with_new_campaigns_and_keys(
        kafka_bootstrap: str, tmp_path: Path, unique_name: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAELP_OPERATOR_TOKEN", OPERATOR_TOKEN)
    # Campaigns of 30 platform days in 3-hour windows (seconds each), so that the violation lands while
    # one is live; the sandbox packs those days into one real day, so the ledger's day limits hold them.
    sandbox = SandboxProcess(tmp_path / "logs", seed=17).start()
    safety = start_safety(tmp_path, kafka_bootstrap,
                          [{"campaign_id": LEDGER_CAMPAIGN, "daily_limit": 20000.0}],
                          {"daily_limit_max": 20000.0, "episode_limit": 20000.0, "phase_total": 100000.0})
    run_id = f"mre{unique_name}"
    seed_runs(tmp_path / "runs.db", [run_id])
    orchestrator = start_orchestrator(
        tmp_path, kafka_bootstrap, f"reentry-{unique_name}", safety, sandbox,
        phases={"historical": {"campaigns": 8, "days": 1}}, ledger_campaigns=[LEDGER_CAMPAIGN],
        campaigns=2, campaign_days=30, step_hours=3, daily_budget_min=10.0, daily_budget_max=12.0)
    try:
        awaiting_approval(orchestrator, run_id)
        approve_entry(capsys, safety.target, run_id)
        with MoneyControlClient(orchestrator.target) as money:
            wait_until(lambda: live(money.report(run_id)), 120, "a live campaign", every_s=0.05,
                       logs=orchestrator.log_tail)
            violation = critical_violation(run_id, time.time())
            produce(kafka_bootstrap, [(VIOLATIONS, LEDGER_CAMPAIGN, violation)])
            wait_until(lambda: run_status(orchestrator, run_id).phase == HIST, 60, "the demotion to phase 2",
                       logs=orchestrator.log_tail)
            wait_until(lambda: (s := run_status(orchestrator, run_id)).phase == HIST and s.phase_work_done,
                       300, "phase 2's validation", logs=orchestrator.log_tail)
            produce(kafka_bootstrap, [(ASSESSMENTS, run_id, assessment(run_id, HIST, 0))])
            wait_until(lambda: run_status(orchestrator, run_id).phase == REAL, 60, "the graduation back",
                       logs=orchestrator.log_tail)
            # News about the first entry: its demoting assessment and its violation, redelivered.
            stale = assessment(run_id, REAL, 0, ready=False, demote=True)
            stale.phase_entry = 1
            produce(kafka_bootstrap, [(ASSESSMENTS, run_id, stale), (VIOLATIONS, LEDGER_CAMPAIGN, violation)])
            status = wait_until(lambda: (s := run_status(orchestrator, run_id)).phase_work_done and s, 300,
                                "the second entry's campaigns", logs=orchestrator.log_tail)
            report = money.report(run_id)
    finally:
        orchestrator.stop()
        safety.stop()
    calls = sandbox.tool("sandbox_call_log")["calls"]
    sandbox.stop()

    assert status.phase == REAL
    moves = [(e.transition.from_phase, e.transition.to_phase) for e in status.phase_history]
    assert moves == [(REAL, HIST), (HIST, REAL)], moves  # no ping-pong: the stale inputs moved nothing
    assert "critical violation spend_above_reservation" in status.phase_history[0].transition.reason
    reentered_at = status.phase_history[1].at.ToNanoseconds() / 1e9

    first = [c for c in report["campaigns"] if c["attempt"] == 1]
    second = [c for c in report["campaigns"] if c["attempt"] == 2]
    # The first entry's campaign ran to its end; none started after the demotion.
    assert [(c["index"], c["status"]) for c in first] == [(0, "settled")]
    assert [(c["index"], c["status"]) for c in second] == [(0, "settled"), (1, "settled")]
    first_keys = {w["key"] for c in first for w in c["windows"]}
    second_keys = {w["key"] for c in second for w in c["windows"]}
    assert first_keys and all(":p3:a1:" in key for key in first_keys)
    assert second_keys and all(":p3:a2:" in key for key in second_keys)
    assert {c["campaign_id"] for c in second}.isdisjoint(c["campaign_id"] for c in first)
    creates = [c for c in calls if c["operation"] == "create_campaign"]
    assert len(creates) == 3 and len({c["arguments"]["request_id"] for c in creates}) == 3
    assert report["reconciliation"]["unreserved_cents"] == 0
    assert report["reconciliation"]["difference_cents"] == 0
    granted = [w["key"] for c in report["campaigns"] for w in c["windows"] if w["granted"]]
    with sqlite3.connect(tmp_path / "ledger.db") as ledger:
        rows = ledger.execute("SELECT idempotency_key, state FROM safety_reservations WHERE run_id = ?",
                              (run_id,)).fetchall()
    assert sorted(key for key, _ in rows) == sorted(granted)  # one reservation per granted window
    assert all(state == "committed" for _, state in rows)

    # What the orchestrator published, folded by the metrics service's own rules.
    records = read_topic(kafka_bootstrap, EPISODES.name)
    episodes = [(r.partition, r.offset, events_pb2.EpisodeSummary.FromString(r.value))
                for r in records if r.key == run_id.encode()]
    phase_3 = {e.episode_id: e for _, _, e in episodes if e.phase == REAL}
    assert set(phase_3) == {f"{run_id}-p{REAL}-a1-c0", f"{run_id}-p{REAL}-a2-c0", f"{run_id}-p{REAL}-a2-c1"}
    assert phase_3[f"{run_id}-p{REAL}-a1-c0"].phase_entry == 1
    for index in (0, 1):
        episode = phase_3[f"{run_id}-p{REAL}-a2-c{index}"]
        assert episode.phase_entry == 2
        assert episode.phase_entered_at.ToNanoseconds() / 1e9 == pytest.approx(reentered_at, abs=1e-6)
    settings = MetricsSettings()
    run = RunState(run_id=run_id)
    apply_episodes(run, episodes, settings)
    violations = CampaignViolations(campaign_id=LEDGER_CAMPAIGN, run_id=run_id)
    apply_violation(violations, violation, 0, 0, 10)
    state = run.phases[REAL]
    assert (state.entry, len(state.window)) == (2, 2)
    counted = entry_violations([violations], REAL, state.entered_at)
    assert (counted.count, counted.critical) == (0, 0)
    assessed = assess(run, REAL, counted, settings)
    assert assessed.phase_entry == 2 and not assessed.demote
