"""Refusals and breaches reach gaelp.violations.v1 through the outbox and decode as Violation."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path
from typing import Any

import grpc

from gaelp.bus import BusProducer, ensure_topics
from gaelp.config import GaelpSettings
from gaelp.db.ledger_outbox import unpublished_violations
from gaelp.safety import ViolationListener
from gaelp.v1 import common_pb2, events_pb2, safety_pb2, safety_pb2_grpc
from safety_policy.publisher import ViolationPublisher


async def test_refusal_is_published_and_decodable(
    bus_settings: GaelpSettings, unique_name: str, tmp_path: Path, tools: Any
) -> None:
    await ensure_topics(bus_settings.kafka)
    received: list[events_pb2.Violation] = []
    arrived = asyncio.Event()

    async def on_violation(violation: events_pb2.Violation) -> None:
        received.append(violation)
        if any(v.rule == "episode_limit" and v.campaign_id == "camp-a" for v in received):
            arrived.set()

    async with (
        tools.in_process_safety(f"sqlite:///{tmp_path / 'ledger.db'}") as safety,
        BusProducer(bus_settings.kafka) as producer,
        ViolationListener(bus_settings.kafka, unique_name, on_violation) as listener,
    ):
        publisher = ViolationPublisher(safety.db, producer, poll_interval_s=0.1)
        publishing = asyncio.create_task(publisher.run())
        listening = asyncio.create_task(listener.run())
        await tools.enter_phase_3(safety.stub, "camp-a")
        refused = await safety.stub.ReserveSpend(
            safety_pb2.ReserveSpendRequest(
                campaign_id="camp-a",
                phase=common_pb2.PHASE_REAL_TESTING,
                amount=11.0,
                idempotency_key=uuid.uuid4().hex,
                episode_id="ep-1",
                run_id="run-7",
            )
        )
        assert refused.refused_by == "episode_limit"
        await asyncio.wait_for(arrived.wait(), timeout=30)
        assert await unpublished_violations(safety.db) == []
        listener.stop_soon()
        await asyncio.wait_for(listening, timeout=10)
        publishing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await publishing
    # The topic is shared with other tests' services: this test's violation is the one of camp-a.
    violation = next(v for v in received if v.rule == "episode_limit" and v.campaign_id == "camp-a")
    assert violation.run_id == "run-7"
    assert violation.severity == events_pb2.SEVERITY_WARNING
    assert violation.amount == 11.0 and violation.phase == common_pb2.PHASE_REAL_TESTING
    assert violation.action_taken == "refused" and violation.violation_id
    assert violation.occurred_at.seconds > 0


async def test_service_process_publishes_and_drains_cleanly(
    bus_settings: GaelpSettings,
    kafka_bootstrap: str,
    unique_name: str,
    tmp_path: Path,
    tools: Any,
    safety_process_factory: Any,
) -> None:
    await ensure_topics(bus_settings.kafka)
    service = safety_process_factory(
        f"sqlite:///{tmp_path / 'ledger.db'}",
        tools.safety_section(outbox_poll_interval_s=0.1),
        {
            "GAELP_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "GAELP_KAFKA_ENABLE_IDEMPOTENCE": "false",
            "GAELP_KAFKA_ACKS": "1",
        },
    )
    service.start()
    await service.wait_serving()
    arrived = asyncio.Event()
    run_id = f"run-{unique_name}"

    async def on_violation(violation: events_pb2.Violation) -> None:
        if violation.run_id == run_id and violation.rule == "phase_entry_approval":
            arrived.set()

    async with ViolationListener(bus_settings.kafka, unique_name, on_violation) as listener:
        listening = asyncio.create_task(listener.run())
        async with grpc.aio.insecure_channel(service.target) as channel:
            refused = await safety_pb2_grpc.SafetyPolicyStub(channel).ReserveSpend(
                safety_pb2.ReserveSpendRequest(
                    campaign_id="camp-a",
                    phase=common_pb2.PHASE_REAL_TESTING,
                    amount=1.0,
                    idempotency_key=uuid.uuid4().hex,
                    episode_id="ep-1",
                    run_id=run_id,
                )
            )
        assert refused.refused_by == "phase_entry_approval"
        await asyncio.wait_for(arrived.wait(), timeout=30)
        listener.stop_soon()
        await asyncio.wait_for(listening, timeout=10)
    service.stop()
    assert service.process.returncode == 0, service.log.read_text()
