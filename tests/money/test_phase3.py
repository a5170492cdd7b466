"""Phase 3 with real processes: the sandbox server, the safety policy, the orchestrator, the broker.

Runs are smoke runs (random actions, no learner) stored in phase 3 before the orchestrator starts
(phases 1 and 2 have tests of their own); what they do in phase 3 is the real money path: an operator
decides the entry through the CLI, every decision window is reserved at the safety policy before
the sandbox sees its calls, spend is committed from the sandbox's lagging reports, and the run's
reconciliation compares the sandbox's own spend log with the ledger's commits.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from dataplane_support import read_topic, run_status, wait_until
from money_support import (
    MONEY_CALLS,
    OPERATOR_TOKEN,
    REAL,
    awaiting_approval,
    cli,
    seed_runs,
    start_orchestrator,
    start_safety,
)

from gaelp.bus import EPISODES
from gaelp.client.money import MoneyControlClient
from gaelp.sim.platform.process import SandboxProcess
from gaelp.v1 import events_pb2, safety_pb2, safety_pb2_grpc

LEDGER_CAMPAIGN = "money-a"
# The sandbox packs platform days into one real day; the ledger's day limit (a real day) is set so
# that it runs out within the run: later windows are refused, which the test wants to see.
DAILY_LIMIT = 60.0


def budget_status(target: str) -> safety_pb2.BudgetStatus:
    with grpc.insecure_channel(target) as channel:
        return safety_pb2_grpc.SafetyPolicyStub(channel).GetBudgetStatus(
            safety_pb2.GetBudgetStatusRequest(campaign_id=LEDGER_CAMPAIGN, phase=REAL), timeout=10)


def the_approval(capsys: pytest.CaptureFixture[str], safety: str, run_id: str) -> str:
    listed = cli(capsys, "approvals", "list", "--safety-policy", safety)
    pending = [a for a in listed if a["run_id"] == run_id]
    assert [a["kind"] for a in pending] == ["enter_phase_3"]
    return str(pending[0]["approval_id"])


def test_phase_3_from_approval_to_exact_reconciliation(kafka_bootstrap: str, tmp_path: Path, unique_name: str,
                                                       capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAELP_OPERATOR_TOKEN", OPERATOR_TOKEN)
    sandbox = SandboxProcess(tmp_path / "logs", seed=5).start()
    safety = start_safety(tmp_path, kafka_bootstrap,
                          [{"campaign_id": LEDGER_CAMPAIGN, "daily_limit": DAILY_LIMIT}],
                          {"episode_limit": 100.0, "phase_total": 5000.0, "max_bid": 5.0})
    rejected_run, run_id = f"mr{unique_name}", f"ma{unique_name}"
    seed_runs(tmp_path / "runs.db", [rejected_run, run_id])
    orchestrator = start_orchestrator(
        tmp_path, kafka_bootstrap, f"money-{unique_name}", safety, sandbox,
        ledger_campaigns=[LEDGER_CAMPAIGN], campaigns=4, campaign_days=1, step_hours=6,
        daily_budget_min=10.0, daily_budget_max=12.0)
    try:
        # A rejected entry keeps the run out of phase 3: no campaign, no call to the platform.
        status = awaiting_approval(orchestrator, rejected_run)
        assert status.phase == REAL and "waiting for approval" in status.detail
        approval_id = the_approval(capsys, safety.target, rejected_run)
        shown = cli(capsys, "approvals", "show", approval_id, "--safety-policy", safety.target)
        assert shown["status"] == "pending" and shown["campaign_id"] == LEDGER_CAMPAIGN
        decided = cli(capsys, "approvals", "reject", approval_id, "--comment", "not this one",
                      "--safety-policy", safety.target)
        assert (decided["status"], decided["decided_by"]) == ("rejected", "test-operator")
        status = wait_until(lambda: (s := run_status(orchestrator, rejected_run)).state == "completed" and s,
                            60, "the rejected run to complete", logs=orchestrator.log_tail)
        assert "rejected" in status.detail and not status.phase_work_done
        assert sandbox.tool("sandbox_call_log")["calls"] == []
        assert not budget_status(safety.target).phase_entry_approved

        # An approved entry (the second run, waiting since the start): its campaigns, every window
        # reserved first.
        awaiting_approval(orchestrator, run_id)
        decided = cli(capsys, "approvals", "approve", the_approval(capsys, safety.target, run_id),
                      "--safety-policy", safety.target)
        assert decided["status"] == "approved"
        wait_until(lambda: run_status(orchestrator, run_id).phase_work_done, 300, "phase 3's campaigns",
                   logs=orchestrator.log_tail)
        with MoneyControlClient(orchestrator.target) as money:
            report = money.report(run_id)
    finally:
        orchestrator.stop()
        safety.stop()
    calls = sandbox.tool("sandbox_call_log")["calls"]
    spend_log = sandbox.tool("sandbox_spend_log")["campaigns"]
    sandbox.stop()

    assert [a["status"] for a in report["approvals"]] == ["approved"]
    live = [c for c in report["campaigns"] if c["campaign_id"]]
    assert live, report
    reconciliation = report["reconciliation"]
    assert reconciliation["unreserved_cents"] == 0 and reconciliation["difference_cents"] == 0
    assert reconciliation["platform_spend"] > 0
    assert reconciliation["platform_spend"] == pytest.approx(sum(sum(d.values()) for d in spend_log.values()))
    # The ledger's maximum bid ($5) is below the policy's bid range (up to $20): the random policy's
    # bids above it were clipped, counted per campaign, and no window carried more.
    assert {c["max_bid"] for c in live} == {5.0} and sum(c["bids_clipped"] for c in live) > 0
    assert all(w["bid"] <= 5.0 for c in live for w in c["windows"])
    windows = [(c, w) for c in live for w in c["windows"]]
    for _, window in windows:
        if window["granted"]:
            assert window["committed"] is not None and window["committed"] <= window["amount"]
    # Every call that can make money leave came at the start of a granted window of its campaign.
    granted = {(c["campaign_id"], w["start_hour"]) for c, w in windows if w["granted"]}
    created = {c["windows"][0]["key"]: c["campaign_id"] for c in live}
    for call in calls:
        if call["operation"] not in MONEY_CALLS:
            continue
        campaign_id = call["campaign_id"] or created[call["arguments"]["request_id"]]
        assert (campaign_id, call["hour"]) in granted, call
    # The ledger's day ran out: a refused window is a violation, and the platform never saw its calls.
    refused = [(c, w) for c in report["campaigns"] for w in c["windows"] if not w["granted"]]
    assert refused and {w["refused_by"] for _, w in refused} <= {"daily_limit"}
    assert {v["rule"] for v in report["violations"]} >= {"daily_limit"}
    for campaign, window in refused:
        if campaign["campaign_id"]:
            assert not [c for c in calls if c["operation"] in MONEY_CALLS and c["campaign_id"] ==
                        campaign["campaign_id"] and c["hour"] >= window["start_hour"]], window
        else:  # refused before it was created: the create was never sent
            assert not [c for c in calls if c["operation"] == "create_campaign"
                        and c["arguments"]["request_id"] == window["key"]], window
    # Each campaign that went live is one phase-3 episode whose spend is what the ledger committed.
    records = read_topic(kafka_bootstrap, EPISODES.name)
    episodes = [events_pb2.EpisodeSummary.FromString(r.value) for r in records if r.key == run_id.encode()]
    phase_3 = {e.episode_id: e for e in episodes if e.phase == REAL}
    assert len(phase_3) == len(live)
    for campaign in live:
        episode = phase_3[f"{run_id}-p{REAL}-a1-c{campaign['index']}"]
        committed = sum(w["committed"] or 0.0 for w in campaign["windows"])
        assert episode.spend == pytest.approx(committed) and episode.budget > 0
