"""Fixtures of the safety-policy tests: an in-process server, a service subprocess, operator tokens."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gaelp.bus.local_broker import free_port
from gaelp.config.sections.safety_policy import SafetyPolicySettings
from gaelp.db import Database
from gaelp.db.ledger import SpendLedger, to_micros
from gaelp.db.ledger_approvals import ApprovalStore
from gaelp.db.ledger_schema import COMPONENT, MIGRATIONS
from gaelp.service.auth import token_hash
from gaelp.v1 import common_pb2, safety_pb2, safety_pb2_grpc
from safety_policy.servicer import SafetyPolicyServicer

OPERATOR = "alice"
OPERATOR_TOKEN = "alice-secret-token"
OPERATOR_METADATA = (("authorization", f"Bearer {OPERATOR_TOKEN}"),)
REPO_ROOT = Path(__file__).resolve().parents[2]


def safety_section(**overrides: Any) -> dict[str, Any]:
    """The safety_policy settings section used by the tests (plain data, for YAML and pydantic)."""
    section: dict[str, Any] = {
        "operators": {OPERATOR: token_hash(OPERATOR_TOKEN)},
        "campaigns": [{"campaign_id": "camp-a", "time_zone": "America/Los_Angeles", "daily_limit": 50.0}],
    }
    section.update(overrides)
    return section


@dataclass
class InProcessSafety:
    stub: safety_pb2_grpc.SafetyPolicyStub
    ledger: SpendLedger
    approvals: ApprovalStore
    db: Database
    settings: SafetyPolicySettings


async def approve(stub: safety_pb2_grpc.SafetyPolicyStub, kind: str, campaign_id: str, **fields: Any) -> str:
    """Request an approval of `kind` and approve it as the test operator; return its id."""
    asked = await stub.RequestApproval(
        safety_pb2.RequestApprovalRequest(
            approval=safety_pb2.ApprovalRequest(
                kind=kind, campaign_id=campaign_id, justification="test", **fields
            )
        )
    )
    approval_id = asked.approval.approval_id
    await stub.Decide(
        safety_pb2.DecideRequest(approval_id=approval_id, approve=True, comment="ok"),
        metadata=OPERATOR_METADATA,
    )
    return approval_id


async def enter_phase_3(stub: safety_pb2_grpc.SafetyPolicyStub, campaign_id: str) -> None:
    await approve(stub, "enter_phase_3", campaign_id, phase=common_pb2.PHASE_REAL_TESTING)


@contextlib.asynccontextmanager
async def in_process_safety(url: str, **overrides: Any) -> AsyncIterator[InProcessSafety]:
    section = SafetyPolicySettings(**safety_section(**overrides))
    db = await Database.connect(url)
    await db.migrate(COMPONENT, MIGRATIONS)
    ledger = SpendLedger(db, section.reservation_ttl_s)
    for campaign in section.campaigns:
        await ledger.register_campaign(
            campaign.campaign_id, campaign.time_zone, to_micros(campaign.daily_limit), time.time()
        )
    approvals = ApprovalStore(db)
    server = grpc.aio.server()
    safety_pb2_grpc.add_SafetyPolicyServicer_to_server(
        SafetyPolicyServicer(section, ledger, approvals), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield InProcessSafety(safety_pb2_grpc.SafetyPolicyStub(channel), ledger, approvals, db, section)
    finally:
        await channel.close()
        await server.stop(None)
        await db.close()


@pytest.fixture
async def safety(tmp_path: Path) -> AsyncIterator[InProcessSafety]:
    async with in_process_safety(f"sqlite:///{tmp_path / 'ledger.db'}") as running:
        yield running


class SafetyProcess:
    """The service as a real process (python -m safety_policy), for load and crash tests."""

    def __init__(
        self,
        database_url: str,
        tmp_path: Path,
        section: dict[str, Any],
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        config = tmp_path / f"safety-{self.port}.yaml"
        config.write_text(yaml.safe_dump({"safety_policy": section}))
        self.env = {
            **os.environ,
            "GAELP_CONFIG": str(config),
            "GAELP_DATABASE_URL": database_url,
            "GAELP_GRPC_PORT": str(self.port),
            "GAELP_KAFKA_BOOTSTRAP": "",
            "GAELP_TELEMETRY_LOG_LEVEL": "WARNING",
            **(extra_env or {}),
        }
        self.log = tmp_path / f"safety-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "safety_policy"],
                env=self.env,
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def wait_serving(self, timeout_s: float = 180.0) -> None:
        # Polled, and generous: a start imports the whole settings tree (torch among it), which took
        # two minutes of wall time for four seconds of CPU under nice on a busy 2-core machine.
        deadline = time.monotonic() + timeout_s
        async with grpc.aio.insecure_channel(self.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                assert self.process is not None and self.process.poll() is None, self.log.read_text()
                with contextlib.suppress(grpc.aio.AioRpcError):
                    reply = await health.Check(
                        health_pb2.HealthCheckRequest(service="gaelp.v1.SafetyPolicy"), timeout=1.0
                    )
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                await asyncio.sleep(0.1)
        raise TimeoutError(f"safety_policy did not serve in {timeout_s}s:\n{self.log.read_text()}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


@pytest.fixture
def safety_process_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[SafetyProcess] = []

    def make(
        database_url: str, section: dict[str, Any], extra_env: dict[str, str] | None = None
    ) -> SafetyProcess:
        process = SafetyProcess(database_url, tmp_path, section, extra_env)
        started.append(process)
        return process

    yield make
    for process in started:
        process.stop()


class SafetyTools:
    """The helpers above for test modules (with --import-mode=importlib they cannot import conftest)."""

    operator = OPERATOR
    operator_token = OPERATOR_TOKEN
    operator_metadata = OPERATOR_METADATA
    free_port = staticmethod(free_port)
    safety_section = staticmethod(safety_section)
    approve = staticmethod(approve)
    enter_phase_3 = staticmethod(enter_phase_3)
    in_process_safety = staticmethod(in_process_safety)


@pytest.fixture
def tools() -> type[SafetyTools]:
    return SafetyTools
