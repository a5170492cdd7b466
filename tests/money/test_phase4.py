"""Phase 4 with real processes: the sandbox server, the safety policy, the orchestrator, the
metrics service, the broker.

A smoke run (random actions, no learner) is stored in phase 4 before the orchestrator starts (a
phase-3 graduation moving a run there is the phase machine's, tested with it). Before its campaigns
the phase measures the transfer test in the simulator (fine-tuned vs from-scratch policy on the
held-out products); its campaigns then run at the same time under the money rule of phase 3, the
last ones on held-out products, flagged transfer; a budget step-up is sent to the sandbox only
after an operator approved its budget_increase, and a rejected one never reaches it. The metrics
service's phase-4 assessment computes transfer_effectiveness from the scores the episodes carry.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from dataplane_support import orchestrator_env, read_topic, run_status, wait_until
from money_support import MONEY_CALLS, OPERATOR, OPERATOR_TOKEN, REAL, cli, seed_runs
from phase_inputs import assessment, produce

from gaelp.bus import ASSESSMENTS, EPISODES
from gaelp.bus.local_broker import free_port
from gaelp.client.money import MoneyControlClient
from gaelp.embedded.processes import ServiceProcess
from gaelp.service.auth import token_hash
from gaelp.sim.market.config import curriculum_level
from gaelp.sim.platform.process import SandboxProcess
from gaelp.sim.platform.sandbox_market import sandbox_catalogue_market
from gaelp.v1 import common_pb2, events_pb2, metrics_pb2, metrics_pb2_grpc

SCALED = common_pb2.PHASE_SCALED
LEDGER_CAMPAIGN = "money-s"
CAMPAIGNS = 5
TRANSFER_CAMPAIGNS = 2
TRANSFER_ENV_STEPS = 3072  # two PPO updates of 64 campaigns: the test checks the path, not the policy


def start_safety(tmp_path: Path, bootstrap: str) -> ServiceProcess:
    # Limits that cover the run (the sandbox packs its days into one real ledger day): no window is
    # refused, so the only budget raises the sandbox can see are the approved ones.
    section = {"operators": {OPERATOR: token_hash(OPERATOR_TOKEN)},
               "campaigns": [{"campaign_id": LEDGER_CAMPAIGN, "daily_limit": 900.0}],
               "real_testing": {"episode_limit": 200.0, "phase_total": 5000.0, "max_bid": 5.0},
               "scaled": {"episode_limit": 400.0, "phase_total": 5000.0, "max_bid": 5.0},
               "outbox_poll_interval_s": 0.2}
    config = tmp_path / "safety.yaml"
    config.write_text(yaml.safe_dump({"safety_policy": section}))
    env = {"GAELP_CONFIG": str(config), "GAELP_DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
           "GAELP_KAFKA_BOOTSTRAP": bootstrap, "GAELP_KAFKA_ENABLE_IDEMPOTENCE": "false",
           "GAELP_KAFKA_ACKS": "1"}
    return ServiceProcess("safety_policy", env, tmp_path / "logs").start()


def start_orchestrator(tmp_path: Path, bootstrap: str, group: str, safety: ServiceProcess,
                       sandbox: SandboxProcess, **money: Any) -> ServiceProcess:
    env = orchestrator_env(bootstrap, tmp_path / "runs.db", "")
    env["GAELP_ORCHESTRATOR_PHASES"] = json.dumps({"group_id": group, "last_phase": 4})
    env["GAELP_ORCHESTRATOR_MONEY"] = json.dumps({
        "safety_policy_target": safety.target, "approval_poll_s": 0.2,
        "platform": {"url": sandbox.url, "backoff_s": 0.05}, "ledger_campaigns": [LEDGER_CAMPAIGN],
        "scaled_campaigns": CAMPAIGNS, "campaign_days": 2, "step_hours": 6,
        "daily_budget_min": 10.0, "daily_budget_max": 12.0, "budget_step_factor": 1.5,
        "scaled_budget_max": 40.0,
        "transfer": {"campaigns": TRANSFER_CAMPAIGNS, "env_steps": TRANSFER_ENV_STEPS,
                     "evaluation_envs": 16}, **money})
    return ServiceProcess("orchestrator", env, tmp_path / "logs").start()


def start_metrics(tmp_path: Path, bootstrap: str, group: str) -> ServiceProcess:
    env = {"GAELP_KAFKA_BOOTSTRAP": bootstrap, "GAELP_KAFKA_ENABLE_IDEMPOTENCE": "false",
           "GAELP_KAFKA_ACKS": "1", "GAELP_METRICS_GROUP_ID": group,
           "GAELP_METRICS_HTTP_PORT": str(free_port()), "GAELP_STORAGE_DATA_DIR": str(tmp_path / "metrics")}
    return ServiceProcess("metrics", env, tmp_path / "logs").start(wait_s=120)


def phase_4_assessment(metrics: ServiceProcess, run_id: str) -> events_pb2.GraduationAssessment:
    with grpc.insecure_channel(metrics.target) as channel:
        stub = metrics_pb2_grpc.MetricsStub(channel)
        request = metrics_pb2.GetAssessmentRequest(run_id=run_id, phase=SCALED)

        def assessed() -> events_pb2.GraduationAssessment | None:
            try:
                answer = stub.GetAssessment(request, timeout=10)
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.NOT_FOUND:  # its episodes not consumed yet
                    return None
                raise
            return answer if answer.episodes_considered >= CAMPAIGNS else None

        return wait_until(assessed, 60, "the metrics' phase-4 assessment", logs=metrics.log_tail)


def waits_for(orchestrator: ServiceProcess, run_id: str, approval_id: str) -> str:
    status = wait_until(lambda: (s := run_status(orchestrator, run_id)).state == "awaiting_approval"
                        and approval_id in s.detail and s, 60, f"the run to wait for approval {approval_id}",
                        logs=orchestrator.log_tail)
    return str(status.detail)


def test_phase_4_campaigns_at_once_with_approved_step_ups(
        kafka_bootstrap: str, tmp_path: Path, unique_name: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAELP_OPERATOR_TOKEN", OPERATOR_TOKEN)
    sandbox = SandboxProcess(tmp_path / "logs", seed=5).start()
    safety = start_safety(tmp_path, kafka_bootstrap)
    metrics = start_metrics(tmp_path, kafka_bootstrap, f"metrics-{unique_name}")
    run_id = f"ms{unique_name}"
    seed_runs(tmp_path / "runs.db", [run_id], phase=SCALED)
    orchestrator = start_orchestrator(tmp_path, kafka_bootstrap, f"money-{unique_name}", safety, sandbox)
    decided: dict[str, str] = {}  # approval id -> the operator's decision
    stepped: dict[str, str] = {}  # the same, budget_increase only
    waiting_details: set[str] = set()
    try:
        # The operator: approves the money entry and the first step-up, rejects every later one.
        deadline = time.monotonic() + 300
        while not run_status(orchestrator, run_id).phase_work_done:
            assert time.monotonic() < deadline, orchestrator.log_tail()
            status = run_status(orchestrator, run_id)
            assert status.state in {"running", "awaiting_approval"}, (status, orchestrator.log_tail())
            pending = [a for a in cli(capsys, "approvals", "list", "--safety-policy", safety.target)
                       if a["run_id"] == run_id]
            for approval in pending:
                # Pending, the run says it waits for this approval (and stays so until it is decided).
                waiting_details.add(waits_for(orchestrator, run_id, str(approval["approval_id"])))
                first_step = approval["kind"] == "budget_increase" and "approve" not in stepped.values()
                verb = "approve" if approval["kind"] == "enter_phase_3" or first_step else "reject"
                cli(capsys, "approvals", verb, str(approval["approval_id"]), "--comment", "test",
                    "--safety-policy", safety.target)
                decided[str(approval["approval_id"])] = verb
                if approval["kind"] == "budget_increase":
                    stepped[str(approval["approval_id"])] = verb
            time.sleep(0.2)
        with MoneyControlClient(orchestrator.target) as money:
            report = money.report(run_id)
        scaled_assessment = phase_4_assessment(metrics, run_id)
    finally:
        orchestrator.stop()
        safety.stop()
        metrics.stop()
    calls = sandbox.tool("sandbox_call_log")["calls"]
    spend_log = sandbox.tool("sandbox_spend_log")["campaigns"]
    sandbox.stop()

    # The campaigns ran at the same time: their windows cover the same platform hours.
    campaigns = [c for c in report["campaigns"] if c["phase"] == SCALED]
    assert len(campaigns) == CAMPAIGNS and all(c["campaign_id"] for c in campaigns), report
    hours = [{w["start_hour"] for w in c["windows"]} for c in campaigns]
    assert set.intersection(*hours), hours

    # Transfer: the held-out products are the catalogue's that no curriculum task sells; both
    # policies trained the same env steps; the last campaigns sell them and are flagged transfer.
    trained = {p.name for level in range(4) for p in curriculum_level(level).products}
    held_out = [p.name for p in sandbox_catalogue_market().products if p.name not in trained]
    transfer = report["transfer"]
    assert held_out and transfer["products"] == held_out, transfer
    assert transfer["fine_tuned_env_steps"] >= TRANSFER_ENV_STEPS <= transfer["scratch_env_steps"], transfer
    assert transfer["random_reward"] < transfer["upper_bound_reward"], transfer
    ordered = sorted(campaigns, key=lambda c: c["index"])
    flagged = [c for c in ordered if c["transfer"]]
    assert flagged == ordered[CAMPAIGNS - TRANSFER_CAMPAIGNS:], ordered
    assert {c["product"] for c in flagged} == set(held_out)
    assert not {c["product"] for c in ordered if not c["transfer"]} & set(held_out)
    # The money rule, per campaign: every window reserved and granted, committed from the reports.
    for campaign in campaigns:
        assert campaign["status"] == "settled", campaign
        for window in campaign["windows"]:
            assert window["key"].split(":")[2] == f"p{SCALED}"
            assert window["granted"] and window["committed"] is not None
            assert window["committed"] <= window["amount"]
    reconciliation = report["reconciliation"]
    assert reconciliation["unreserved_cents"] == 0 and reconciliation["difference_cents"] == 0
    assert reconciliation["platform_spend"] > 0
    assert reconciliation["platform_spend"] == pytest.approx(sum(sum(d.values()) for d in spend_log.values()))
    granted = {(c["campaign_id"], w["start_hour"]) for c in campaigns for w in c["windows"]}
    created = {c["windows"][0]["key"]: c["campaign_id"] for c in campaigns}
    for call in calls:
        if call["operation"] in MONEY_CALLS:
            campaign_id = call["campaign_id"] or created[call["arguments"]["request_id"]]
            assert (campaign_id, call["hour"]) in granted, call

    # Step-ups: asked only through budget_increase approvals, the run waiting meanwhile; only the
    # approved one reached the sandbox (the budget stays put between step-ups).
    steps = [a for a in report["approvals"] if a["kind"] == "budget_increase"]
    assert steps, "no campaign's level was sustained: no step-up was asked"
    assert {a["status"] for a in steps} <= {"approved", "rejected"}
    expected = ["approved" if decided[a["approval_id"]] == "approve" else "rejected" for a in steps]
    assert [a["status"] for a in steps] == expected and "approved" in expected
    assert any("budget_increase" in d for d in waiting_details), waiting_details
    by_index = {str(c["index"]): c["campaign_id"] for c in campaigns}
    raises = {(c["campaign_id"], c["arguments"]["daily_budget"]) for c in calls
              if c["operation"] == "update_budget"}
    approved = set()
    for step in steps:
        attempt, index, levels = step["subject"].split(":")
        assert attempt == "a1"
        index = index.removeprefix("c")
        target = (by_index[index], float(levels.split("->")[1]))
        if step["status"] == "approved":
            approved.add(target)
        else:
            assert target not in raises, (step, raises)
    assert raises <= approved, (raises, approved)
    assert raises, "the approved step-up was not sent"

    # One phase-4 episode per campaign, its spend what the ledger committed.
    records = read_topic(kafka_bootstrap, EPISODES.name)
    episodes = [events_pb2.EpisodeSummary.FromString(r.value) for r in records if r.key == run_id.encode()]
    phase_4 = {e.episode_id: e for e in episodes if e.phase == SCALED}
    assert len(phase_4) == CAMPAIGNS
    for campaign in campaigns:
        episode = phase_4[f"{run_id}-p{SCALED}-a1-c{campaign['index']}"]
        assert episode.spend == pytest.approx(sum(w["committed"] for w in campaign["windows"]))
        assert episode.transfer == campaign["transfer"]
        if episode.transfer:
            assert episode.transfer_fine_tuned_score == pytest.approx(transfer["fine_tuned_score"])
            assert episode.transfer_scratch_score == pytest.approx(transfer["scratch_score"])

    # The metrics service's assessment of phase 4 uses the transfer scores the episodes carried.
    figures = {c.name: c for c in scaled_assessment.criteria}
    scratch = transfer["scratch_score"]
    effectiveness = transfer["fine_tuned_score"] / scratch if scratch > 0 else 0.0
    assert figures["transfer_effectiveness"].value == pytest.approx(effectiveness), figures
    assert figures["transfer_effectiveness"].passed == (effectiveness >= 0.8)
    assert figures["multi_campaign_success"].value == pytest.approx(
        sum(e.success for e in phase_4.values()) / CAMPAIGNS)


def test_a_phase_3_graduation_enters_phase_4_and_its_transfer(
        kafka_bootstrap: str, tmp_path: Path, unique_name: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """From phase 3's campaigns to phase 4's: the graduating assessment is synthetic (phase 3's
    criteria on random play are the metrics service's, tested with it), everything else is real."""
    monkeypatch.setenv("GAELP_OPERATOR_TOKEN", OPERATOR_TOKEN)
    sandbox = SandboxProcess(tmp_path / "logs", seed=7).start()
    safety = start_safety(tmp_path, kafka_bootstrap)
    run_id = f"mt{unique_name}"
    seed_runs(tmp_path / "runs.db", [run_id], phase=REAL)
    orchestrator = start_orchestrator(tmp_path, kafka_bootstrap, f"money-{unique_name}", safety, sandbox,
                                      campaigns=1, scaled_campaigns=3, campaign_days=1)
    graduated = False
    try:
        deadline = time.monotonic() + 300
        while True:
            assert time.monotonic() < deadline, orchestrator.log_tail()
            status = run_status(orchestrator, run_id)
            assert status.state in {"running", "awaiting_approval"}, (status, orchestrator.log_tail())
            if status.phase_work_done and status.phase == SCALED:
                break
            if status.phase_work_done and status.phase == REAL and not graduated:
                produce(kafka_bootstrap, [(ASSESSMENTS, run_id, assessment(run_id, REAL, 0))])
                graduated = True
            for approval in cli(capsys, "approvals", "list", "--safety-policy", safety.target):
                if approval["run_id"] == run_id:  # the operator approves everything
                    cli(capsys, "approvals", "approve", str(approval["approval_id"]), "--comment", "test",
                        "--safety-policy", safety.target)
            time.sleep(0.2)
        with MoneyControlClient(orchestrator.target) as money:
            report = money.report(run_id)
    finally:
        orchestrator.stop()
        safety.stop()
        sandbox.stop()

    transitions = [(e.transition.from_phase, e.transition.to_phase) for e in status.phase_history]
    assert transitions == [(REAL, SCALED)]
    phase_3 = [c for c in report["campaigns"] if c["phase"] == REAL]
    phase_4 = sorted((c for c in report["campaigns"] if c["phase"] == SCALED), key=lambda c: c["index"])
    assert [c["status"] for c in phase_3] == ["settled"] and not phase_3[0]["transfer"]
    assert [c["status"] for c in phase_4] == ["settled"] * 3, phase_4
    # The last TRANSFER_CAMPAIGNS of phase 4 sell held-out products, measured before they started.
    assert [c["transfer"] for c in phase_4] == [False] + [True] * TRANSFER_CAMPAIGNS
    assert {c["product"] for c in phase_4[1:]} <= set(report["transfer"]["products"])
    assert phase_3[0]["product"] not in report["transfer"]["products"]
    assert all(c["transfer_scratch_score"] == report["transfer"]["scratch_score"] for c in phase_4[1:])
    reconciliation = report["reconciliation"]
    assert reconciliation["unreserved_cents"] == 0 and reconciliation["difference_cents"] == 0
