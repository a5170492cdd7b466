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
from pathlib import Path

from gaelp.bus.local_broker import LocalBroker
from gaelp.client.money import ApprovalsClient, MoneyControlClient
from gaelp.config import load_settings
from gaelp.embedded.money_report import MoneyStack
from gaelp.embedded.processes import ServiceProcess
from gaelp.embedded.stop_drill import live_campaigns, run_state_of, stop_and_resume, wait_for
from gaelp.v1 import common_pb2
from orchestrator.run_document import RunDocument
from orchestrator.run_store import RunStore

RUN_ID = "stop-bench"


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
        def pending() -> list[str]:
            return [a.approval_id for a in approvals.pending() if a.run_id == RUN_ID]

        for approval_id in wait_for(pending, 60, "phase-3 entry request"):
            approvals.decide(approval_id, True, "benchmark")
        for _ in range(cycles):
            wait_for(lambda: live_campaigns(control.report(RUN_ID)), 120, "live campaign")
            outcome = stop_and_resume(approvals, control, money.sandbox, run_state_of(orchestrator, RUN_ID),
                                      "benchmark")
            latencies.append(outcome.latency_s)
    return latencies


if __name__ == "__main__":
    raise SystemExit(main())
