"""Processes of the money-phase tests: the sandbox, the safety policy, an orchestrator whose runs
start in phase 3 (stored as if an earlier orchestrator had brought them there)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from dataplane_support import orchestrator_env, run_status, wait_until

from gaelp.cli.main import main as gaelp
from gaelp.config import load_settings
from gaelp.embedded.money_report import MoneyStack
from gaelp.embedded.processes import ServiceProcess
from gaelp.service.auth import token_hash
from gaelp.sim.platform.process import SandboxProcess
from gaelp.v1 import common_pb2, orchestrator_pb2
from orchestrator.run_document import RunDocument
from orchestrator.run_store import RunStore

OPERATOR, OPERATOR_TOKEN = "test-operator", "test-operator-token"
SIM, HIST, REAL = common_pb2.PHASE_SIMULATION, common_pb2.PHASE_HISTORICAL, common_pb2.PHASE_REAL_TESTING
MONEY_CALLS = {"create_campaign", "update_budget", "update_bid", "update_creative", "update_audience",
               "resume"}


def start_safety(tmp_path: Path, bootstrap: str, campaigns: list[dict[str, Any]],
                 real_testing: dict[str, float]) -> ServiceProcess:
    config = tmp_path / "safety.yaml"
    section = {"operators": {OPERATOR: token_hash(OPERATOR_TOKEN)}, "campaigns": campaigns,
               "real_testing": real_testing, "outbox_poll_interval_s": 0.2}
    config.write_text(yaml.safe_dump({"safety_policy": section}))
    env = {"GAELP_CONFIG": str(config), "GAELP_DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
           "GAELP_KAFKA_BOOTSTRAP": bootstrap, "GAELP_KAFKA_ENABLE_IDEMPOTENCE": "false",
           "GAELP_KAFKA_ACKS": "1"}
    return ServiceProcess("safety_policy", env, tmp_path / "logs").start()


def start_orchestrator(tmp_path: Path, bootstrap: str, group: str, safety: ServiceProcess,
                       sandbox: SandboxProcess, phases: dict[str, Any] | None = None,
                       **money: Any) -> ServiceProcess:
    """phases: orchestrator.phases settings beyond the group and last_phase (3)."""
    env = orchestrator_env(bootstrap, tmp_path / "runs.db", "")
    env["GAELP_ORCHESTRATOR_PHASES"] = json.dumps({"group_id": group, "last_phase": 3, **(phases or {})})
    env["GAELP_ORCHESTRATOR_MONEY"] = json.dumps({
        "safety_policy_target": safety.target, "approval_poll_s": 0.2,
        "platform": {"url": sandbox.url, "backoff_s": 0.05}, **money})
    return ServiceProcess("orchestrator", env, tmp_path / "logs").start()


def seed_runs(database: Path, run_ids: list[str], phase: int = REAL) -> None:
    """Runs stored as a previous orchestrator left them, in `phase`: the orchestrator started next
    takes them over and drives them from there (phases 1 and 2 have tests of their own)."""

    async def seed() -> None:
        store = await RunStore.open(f"sqlite:///{database}", "money-test-seeder", 30.0)
        try:
            for run_id in run_ids:
                document = RunDocument(run_id=run_id, kind="smoke", phase=phase, smoke_episodes=10**9,
                                       actor_batches=[0])
                await store.db.execute(
                    "INSERT INTO runs (run_id, state, document, updated_at) VALUES ($1, $2, $3, $4)",
                    run_id, "running", json.dumps(document.model_dump(mode="json")), time.time())
        finally:
            await store.db.close()

    asyncio.run(seed())


def awaiting_approval(orchestrator: ServiceProcess, run_id: str) -> orchestrator_pb2.RunStatus:
    return wait_until(lambda: (s := run_status(orchestrator, run_id)).state == "awaiting_approval" and s, 120,
                      "the phase-3 entry approval request", logs=orchestrator.log_tail)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    """`gaelp ARGV --json` as an operator runs it; its output, parsed."""
    capsys.readouterr()
    assert gaelp([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def approve_entry(capsys: pytest.CaptureFixture[str], safety_target: str, run_id: str) -> str:
    """The run's pending phase-3 entry request approved from the operator CLI; its approval id."""
    pending = [a for a in cli(capsys, "approvals", "list", "--safety-policy", safety_target)
               if a["run_id"] == run_id]
    approval_id = str(pending[0]["approval_id"])
    assert gaelp(["approvals", "approve", approval_id, "--safety-policy", safety_target]) == 0
    return approval_id


@contextlib.contextmanager
def demo_stack(tmp_path: Path, bootstrap: str, group: str, run_id: str, phase: int = REAL,
               **money_settings: Any) -> Iterator[tuple[MoneyStack, ServiceProcess, ServiceProcess]]:
    """The sandbox, safety policy and orchestrator configured the way the embedded run configures
    them (its demo operator and ledger limits), with `run_id` stored in `phase` (3 or 4)."""
    settings = load_settings(orchestrator={"money": money_settings})
    money = MoneyStack.start(settings, tmp_path / "logs", seed=3)
    seed_runs(tmp_path / "runs.db", [run_id], phase=phase)
    processes: list[ServiceProcess] = []
    try:
        safety = ServiceProcess("safety_policy", {
            "GAELP_DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
            "GAELP_KAFKA_BOOTSTRAP": bootstrap, "GAELP_KAFKA_ENABLE_IDEMPOTENCE": "false",
            "GAELP_KAFKA_ACKS": "1", **money.safety_env(),
        }, tmp_path / "logs").start()
        processes.append(safety)
        env = orchestrator_env(bootstrap, tmp_path / "runs.db", "")
        env["GAELP_ORCHESTRATOR_PHASES"] = json.dumps({"group_id": group, "last_phase": phase})
        orchestrator = ServiceProcess("orchestrator", {**env, **money.orchestrator_env(safety.target)},
                                      tmp_path / "logs").start()
        processes.append(orchestrator)
        yield money, safety, orchestrator
    finally:
        for process in reversed(processes):
            process.stop()
        money.stop()
