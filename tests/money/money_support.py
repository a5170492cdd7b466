"""Processes of the money-phase tests: the sandbox, the safety policy, an orchestrator whose runs
are moved to phase 3 by assessments on the broker (in place of the metrics service)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import yaml
from dataplane_support import orchestrator_env, run_status, wait_until

from gaelp.bus import ASSESSMENTS, BusProducer
from gaelp.bus.local_broker import free_port
from gaelp.config import load_settings
from gaelp.embedded.processes import ServiceProcess
from gaelp.service.auth import token_hash
from gaelp.sim.platform.mcp_client import McpPlatformConnector
from gaelp.v1 import common_pb2, events_pb2, orchestrator_pb2, orchestrator_pb2_grpc

OPERATOR, OPERATOR_TOKEN = "test-operator", "test-operator-token"
SIM, HIST, REAL = common_pb2.PHASE_SIMULATION, common_pb2.PHASE_HISTORICAL, common_pb2.PHASE_REAL_TESTING
MONEY_CALLS = {"create_campaign", "update_budget", "update_bid", "update_creative", "update_audience",
               "resume"}


class Sandbox:
    def __init__(self, log_dir: Path, seed: int = 5) -> None:
        self.port = free_port()
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log = (log_dir / "sandbox.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gaelp.sim.platform.sandbox", "--port", str(self.port),
             "--transient-error-rate", "0", "--report-delay-hours", "3", "--seed", str(seed)],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as answer:
                    if json.load(answer)["status"] == "ok":
                        return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("the sandbox did not start") from None
                time.sleep(0.2)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def tool(self, name: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        async def call() -> dict[str, Any]:
            async with McpPlatformConnector(load_settings().orchestrator.money.platform.model_copy(
                    update={"url": self.url})) as platform:
                return await platform.call(name, arguments or {})
        return asyncio.run(call())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


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


def start_orchestrator(tmp_path: Path, bootstrap: str, group: str, safety: ServiceProcess, sandbox: Sandbox,
                       **money: Any) -> ServiceProcess:
    env = orchestrator_env(bootstrap, tmp_path / "runs.db", "")
    env["GAELP_ORCHESTRATOR_PHASES"] = json.dumps(
        {"group_id": group, "last_phase": 3, "historical": {"campaigns": 8, "days": 1}})
    env["GAELP_ORCHESTRATOR_MONEY"] = json.dumps({
        "safety_policy_target": safety.target, "approval_poll_s": 0.2,
        "platform": {"url": sandbox.url, "backoff_s": 0.05}, **money})
    return ServiceProcess("orchestrator", env, tmp_path / "logs").start()


def produce_assessment(bootstrap: str, run_id: str, phase: int) -> None:
    message = events_pb2.GraduationAssessment(
        run_id=run_id, phase=phase, policy_version=0, ready_to_graduate=True,  # type: ignore[arg-type]
        reason="all criteria passed", episodes_considered=10,
        criteria=[events_pb2.CriterionResult(name="c", value=1.0, threshold=0.5, comparison=">=",
                                             passed=True)])

    async def send() -> None:
        settings = load_settings(kafka={"bootstrap": bootstrap, "enable_idempotence": False, "acks": "1"})
        async with BusProducer(settings.kafka, client_id="money-test") as producer:
            await producer.send(ASSESSMENTS, run_id, message)

    asyncio.run(send())


def bring_to_phase_3(orchestrator: ServiceProcess, bootstrap: str, run_id: str) -> orchestrator_pb2.RunStatus:
    """A smoke run (random actions, no learner) graduated by hand through phases 1 and 2."""
    with grpc.insecure_channel(orchestrator.target) as channel:
        orchestrator_pb2_grpc.OrchestratorStub(channel).StartRun(orchestrator_pb2.StartRunRequest(
            run_id=run_id, config_json=json.dumps({"kind": "smoke", "episodes": 10**9})), timeout=60)
    produce_assessment(bootstrap, run_id, SIM)
    wait_until(lambda: (s := run_status(orchestrator, run_id)).phase == HIST and s.phase_work_done, 180,
               "phase 2's work", logs=orchestrator.log_tail)
    produce_assessment(bootstrap, run_id, HIST)
    return wait_until(lambda: (s := run_status(orchestrator, run_id)).state == "awaiting_approval" and s, 120,
                      "the phase-3 entry approval request", logs=orchestrator.log_tail)
