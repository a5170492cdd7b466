"""The process lifecycle every service shares: a service serves on uvloop, with what its start built
frozen out of the garbage collector's full collections."""

from __future__ import annotations

import asyncio
import gc

import grpc
import uvloop
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gaelp.bus.local_broker import free_port
from gaelp.config import load_settings
from gaelp.service import ServiceRuntime, run_process


def test_a_service_serves_on_uvloop_with_its_start_frozen() -> None:
    port = free_port()
    seen: dict[str, object] = {}

    async def serve() -> int:
        runtime = ServiceRuntime("runtime-test", load_settings(grpc={"port": port}), port)
        running = asyncio.create_task(runtime.run())
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=10, wait_for_ready=True)
        seen["serving"] = reply.status == health_pb2.HealthCheckResponse.SERVING
        seen["uvloop"] = isinstance(asyncio.get_running_loop(), uvloop.Loop)
        seen["frozen"] = gc.get_freeze_count()
        runtime.request_stop()
        return await running

    gc.unfreeze()
    try:
        assert run_process(serve) == 0
    finally:
        gc.unfreeze()
    assert seen["serving"] and seen["uvloop"]
    # Everything alive when it started serving (the modules, settings and server) is frozen.
    assert isinstance(seen["frozen"], int) and seen["frozen"] > 10_000
