"""Emergency-stop latency: from `gaelp stop` (EmergencyStop at the safety policy, then MoneyControl.
PauseAllCampaigns at the orchestrator) to the last money-phase campaign paused on the sandbox.

    python -m benchmarks.emergency_stop [--cycles 5]

Real processes on loopback: a local broker, the sandbox, the safety policy, an orchestrator driving
one phase-3 run (stored in phase 3 before the orchestrator starts, as a restarted orchestrator finds
it). Each cycle waits for a live campaign, stops, checks in the sandbox's call log that every paused
campaign received its pause, then resumes through an approved resume_after_stop request. Prints
each latency, the median and the maximum, and the machine's load average.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import grpc

from gaelp.bus.local_broker import LocalBroker
from gaelp.client.money import ApprovalsClient, MoneyControlClient
from gaelp.config import load_settings
from gaelp.embedded.money_report import MoneyStack
from gaelp.embedded.processes import ServiceProcess
from gaelp.v1 import common_pb2, orchestrator_pb2, orchestrator_pb2_grpc
from orchestrator.run_document import RunDocument
from orchestrator.run_store import RunStore

RUN_ID = "stop-bench"
T = TypeVar("T")


def seed_run(database: Path) -> None:
    async def seed() -> None:
        store = await RunStore.open(f"sqlite:///{database}", "benchmark-seeder", 30.0)
        try:
            document = RunDocument(run_id=RUN_ID, kind="smoke", phase=common_pb2.PHASE_REAL_TESTING,
                                   smoke_episodes=10**9, actor_batches=[0])
            await store.db.execute(
                "INSERT INTO runs (run_id, state, document, updated_at) VALUES ($1, $2, $3, $4)",
                RUN_ID, "running", json.dumps(document.model_dump(mode="json")), time.time())
        finally:
            await store.db.close()

    asyncio.run(seed())


def wait_for(condition: Callable[[], T], timeout_s: float, what: str) -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise TimeoutError(f"no {what} within {timeout_s} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cycles", type=int, default=5)
    args = parser.parse_args(argv)
    settings = load_settings(orchestrator={"money": {"campaigns": args.cycles + 1, "campaign_days": 10,
                                                     "daily_budget_max": 12.0, "approval_poll_s": 0.1}})
    with tempfile.TemporaryDirectory(prefix="gaelp-stop-") as tmp, LocalBroker() as broker:
        root = Path(tmp)
        money = MoneyStack.start(settings, root / "logs", seed=1)
        processes: list[ServiceProcess] = []
        try:
            kafka = {"GAELP_KAFKA_BOOTSTRAP": broker.bootstrap, "GAELP_KAFKA_ENABLE_IDEMPOTENCE": "false",
                     "GAELP_KAFKA_ACKS": "1"}
            ledger = {"GAELP_DATABASE_URL": f"sqlite:///{root / 'ledger.db'}"}
            safety = ServiceProcess("safety_policy", {**kafka, **money.safety_env(), **ledger},
                                    root / "logs").start()
            processes.append(safety)
            seed_run(root / "runs.db")
            orchestrator = ServiceProcess("orchestrator", {
                **kafka, **money.orchestrator_env(safety.target), "GAELP_ORCHESTRATOR_LEARNER_TARGET": "",
                "GAELP_DATABASE_URL": f"sqlite:///{root / 'runs.db'}",
                "GAELP_ORCHESTRATOR_PHASES": json.dumps({"group_id": "stop-bench"})}, root / "logs").start()
            processes.append(orchestrator)
            latencies = run_cycles(args.cycles, safety.target, orchestrator.target, money)
        finally:
            for process in reversed(processes):
                process.stop()
            money.stop()
    load = os.getloadavg()
    print(f"emergency stop -> last campaign paused, {len(latencies)} cycles: "
          + ", ".join(f"{s * 1000:.0f} ms" for s in latencies))
    print(f"median {statistics.median(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms "
          f"(load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}, {os.cpu_count()} cores)")
    return 0


def run_cycles(cycles: int, safety: str, orchestrator: str, money: MoneyStack) -> list[float]:
    latencies = []
    with ApprovalsClient(safety, 10.0, money.token) as approvals, MoneyControlClient(orchestrator) as control:
        with grpc.insecure_channel(orchestrator) as channel:
            runs = orchestrator_pb2_grpc.OrchestratorStub(channel)

            def state() -> str:
                status = runs.GetRunStatus(orchestrator_pb2.RunIdRequest(run_id=RUN_ID), timeout=10)
                return str(status.state)

            def pending() -> list[str]:
                return [a.approval_id for a in approvals.pending() if a.run_id == RUN_ID]

            for approval_id in wait_for(pending, 60, "phase-3 entry request"):
                approvals.decide(approval_id, True, "benchmark")
            for _ in range(cycles):
                wait_for(lambda: [c for c in control.report(RUN_ID)["campaigns"] if c["status"] == "active"],
                         120, "live campaign")
                calls_before = money.sandbox.tool("sandbox_call_log")["total"]
                started = time.monotonic()
                approvals.emergency_stop("benchmark")
                paused = control.pause_all("benchmark").paused_campaign_ids
                latencies.append(time.monotonic() - started)
                calls = money.sandbox.tool("sandbox_call_log", {"since": calls_before})["calls"]
                pauses = {c["campaign_id"] for c in calls if c["operation"] == "pause"}
                assert set(paused) <= pauses and paused, (paused, pauses)
                wait_for(lambda: state() == "awaiting_approval", 60, "the run to wait for the resume")
                resume = approvals.request_resume("benchmark cycle done")
                approvals.decide(resume.approval_id, True, "benchmark")
                wait_for(lambda: state() == "running", 60, "the run to resume")
    return latencies


if __name__ == "__main__":
    raise SystemExit(main())
