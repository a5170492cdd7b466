"""Entry point of the orchestrator process."""

from __future__ import annotations

import socket

from gaelp.bus import BusProducer, ensure_topics
from gaelp.config import GaelpSettings, load_settings
from gaelp.service import ServiceRuntime
from gaelp.v1 import orchestrator_pb2_grpc
from orchestrator.control import OrchestratorServicer
from orchestrator.runs import RunManager


async def serve(settings: GaelpSettings | None = None) -> int:
    settings = settings or load_settings()
    runtime = ServiceRuntime("orchestrator", settings, settings.orchestrator.grpc_port)
    await ensure_topics(settings.kafka)
    producer = BusProducer(settings.kafka, client_id="orchestrator")
    await producer.start()
    runs = RunManager(settings.orchestrator, producer, actor_id=f"{socket.gethostname()}-actor")
    runtime.add_servicer(
        lambda server: orchestrator_pb2_grpc.add_OrchestratorServicer_to_server(
            OrchestratorServicer(runs), server
        ),
        "gaelp.v1.Orchestrator",
    )
    runtime.on_drain(runs.drain)
    runtime.on_drain(producer.stop)
    return await runtime.run()
