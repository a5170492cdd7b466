"""Entry point of the orchestrator process."""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid

from gaelp.bus import ASSESSMENTS, POLICY, VIOLATIONS, BusConsumer, BusProducer, Delivery, ensure_topics
from gaelp.config import GaelpSettings, load_settings
from gaelp.service import ServiceRuntime
from gaelp.v1 import money_pb2_grpc, orchestrator_pb2_grpc
from orchestrator.control import OrchestratorServicer
from orchestrator.environments import resolve_environment
from orchestrator.leases import owner_name
from orchestrator.money.control import MoneyControlServicer
from orchestrator.ownership import LeaseKeeper
from orchestrator.policy import PolicyHolder
from orchestrator.run_store import RunStore
from orchestrator.runs import RunManager

logger = logging.getLogger(__name__)


async def serve(settings: GaelpSettings | None = None) -> int:
    settings = settings or load_settings()
    runtime = ServiceRuntime("orchestrator", settings, settings.orchestrator.grpc_port)
    await ensure_topics(settings.kafka)
    producer = BusProducer(settings.kafka, client_id="orchestrator")
    await producer.start()
    leases = settings.orchestrator.leases
    owner = owner_name(leases.replica_id or socket.gethostname(), uuid.uuid4().hex[:8])
    store = await RunStore.open(settings.database.url, owner, leases.duration_s)
    learner_target = settings.orchestrator.learner_target
    learner_channel = runtime.client_channel(learner_target) if learner_target else None
    registry_target = settings.orchestrator.registry_target
    registry_channel = runtime.client_channel(registry_target) if registry_target else None
    environment = await resolve_environment(settings.orchestrator, registry_channel,
                                            settings.environment_registry.entry_point_modules)
    if registry_channel is not None:
        await registry_channel.close()
    runs = RunManager(settings, producer, store, learner_channel, environment)
    keeper = LeaseKeeper(runs, store, leases)
    # Every orchestrator process needs every policy update: a group of its own, newest first.
    policies = BusConsumer(settings.kafka, [POLICY], f"orchestrator-{uuid.uuid4().hex[:8]}", producer,
                           client_id="orchestrator", auto_offset_reset="latest")

    async def on_policy(delivery: Delivery) -> None:
        await runs.offer_policy(delivery.value)

    # Assessments and violations move runs between phases; what cannot be decoded goes to the DLQ.
    # One group for all replicas: each input reaches one, which forwards what concerns runs it does
    # not drive (ownership.py).
    phase_group = settings.orchestrator.phases.group_id
    phase_inputs = BusConsumer(settings.kafka, [ASSESSMENTS, VIOLATIONS], phase_group, producer,
                               client_id="orchestrator")

    async def on_phase_input(delivery: Delivery) -> None:
        if delivery.topic == ASSESSMENTS.name:
            await keeper.on_assessment(delivery.value)
        else:
            await keeper.on_violation(delivery.value)

    runtime.add_servicer(
        lambda server: orchestrator_pb2_grpc.add_OrchestratorServicer_to_server(
            OrchestratorServicer(runs, keeper), server
        ),
        "gaelp.v1.Orchestrator",
    )
    runtime.add_servicer(
        lambda server: money_pb2_grpc.add_MoneyControlServicer_to_server(
            MoneyControlServicer(runs.money), server
        ),
        "gaelp.v1.MoneyControl",
    )
    await policies.start()
    consume = runtime.start_task(policies.run(on_policy), "policy-consumer")
    # The first policy a process builds costs seconds (torch initializes lazily): pay it now, not
    # while taking a run over from a replica that died.
    await asyncio.to_thread(PolicyHolder, settings.training, runs.observation_space, runs.action_space)
    taken = await runs.resume_unfinished()
    logger.info("orchestrator replica up", extra={"owner": owner, "runs_taken_over": taken})
    keeping = runtime.start_task(keeper.keep(), "lease-keeper")
    scanning = runtime.start_task(keeper.scan(), "take-over-scan")
    await phase_inputs.start()
    consume_phases = runtime.start_task(phase_inputs.run(on_phase_input), "phase-consumer")

    async def drain() -> None:
        scanning.cancel()  # no take-overs while draining
        keeping.cancel()
        await runs.drain()
        await store.release_all()  # the other replicas take these runs over at their next scan
        await policies.finish(consume, settings.grpc.grace_period_s / 3)
        await policies.stop()
        await phase_inputs.finish(consume_phases, settings.grpc.grace_period_s / 3)
        await phase_inputs.stop()
        await producer.stop()
        if learner_channel is not None:
            await learner_channel.close()
        await store.close()

    runtime.on_drain(drain)
    return await runtime.run()
