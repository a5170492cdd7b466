"""The lifecycle every service process shares.

Start: telemetry, a grpc.aio server with grpc.health.v1, server reflection (unless
settings.grpc.reflection is off) and the servicers, background tasks (consumers, loops). Every
method is behind the request guard: its server span, undecodable bodies answer INVALID_ARGUMENT,
unexpected errors INTERNAL with an error id. SIGTERM/SIGINT: health NOT_SERVING so load balancers
stop sending, run the drain hooks (consumers finish their batch and commit, learners checkpoint),
cancel what is left, stop the server letting calls in flight finish, and exit — all within
grace_period_s.

Before serving, what the start built (imported modules, settings, servicers) is moved out of the
garbage collector's view (gc.freeze): a full collection then walks only what serving allocates.
Without it, a full collection in the safety-policy service under load took 33-59 ms, a stall of
every call in flight (docs/ledger.md).

A service process runs on uvloop (run_process): grpc.aio and asyncpg spend less of the loop's time
there (the safety-policy service: 4-9% less CPU under the ledger benchmark, docs/ledger.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import grpc
import uvloop
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gaelp.config import GaelpSettings
from gaelp.service.deadlines import DefaultDeadlineInterceptor
from gaelp.service.request_guard import RequestGuardInterceptor
from gaelp.telemetry import Telemetry, configure_telemetry

logger = logging.getLogger(__name__)

DrainHook = Callable[[], Awaitable[None]]


class ServiceRuntime:
    """Owns one service's gRPC server, health status, background tasks and shutdown."""

    def __init__(self, name: str, settings: GaelpSettings, default_port: int) -> None:
        self.name = name
        self.settings = settings
        self.telemetry: Telemetry = configure_telemetry(name, settings.telemetry)
        grpc_settings = settings.grpc
        self.server = grpc.aio.server(
            interceptors=[RequestGuardInterceptor(self.telemetry.tracer("gaelp.grpc.server"))],
            options=[
                ("grpc.max_receive_message_length", grpc_settings.max_message_bytes),
                ("grpc.max_send_message_length", grpc_settings.max_message_bytes),
            ],
        )
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        port = grpc_settings.port or default_port
        self.port = self.server.add_insecure_port(f"{grpc_settings.host}:{port}")
        if self.port == 0:
            raise RuntimeError(f"{name}: cannot bind gRPC on {grpc_settings.host}:{port}")
        self._service_names: list[str] = []
        self._drain_hooks: list[DrainHook] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._stop = asyncio.Event()
        self.failed = False

    def add_servicer(self, register: Callable[[grpc.aio.Server], None], service_name: str) -> None:
        """register(server) adds the servicer; service_name is its full name for health checks."""
        register(self.server)
        self._service_names.append(service_name)

    def on_drain(self, hook: DrainHook) -> None:
        """Hooks run in order on shutdown after health is NOT_SERVING and before tasks are cancelled."""
        self._drain_hooks.append(hook)

    def start_task(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """A background task whose failure stops the whole service (never a silent dead consumer)."""
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._task_done)
        self._tasks.append(task)
        return task

    def client_channel(self, target: str) -> grpc.aio.Channel:
        """A channel to another service: traced, and every call gets the default deadline."""
        interceptors = [
            DefaultDeadlineInterceptor(self.settings.grpc.deadline_s),
            *self.telemetry.client_interceptors(),
        ]
        return grpc.aio.insecure_channel(target, interceptors=interceptors)

    def request_stop(self) -> None:
        self._stop.set()

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            logger.error("background task %s failed: %r; stopping", task.get_name(), error,
                         exc_info=error)
            self.failed = True
            self._stop.set()

    async def _set_serving(self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType) -> None:
        for service_name in ["", *self._service_names]:
            await self.health.set(service_name, status)

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT or request_stop(); return the process exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        if self.settings.grpc.reflection:
            # Registered last so that it lists every servicer added before the start.
            reflection.enable_server_reflection(
                [*self._service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], self.server
            )
        gc.collect()
        gc.freeze()
        await self.server.start()
        await self._set_serving(health_pb2.HealthCheckResponse.SERVING)
        logger.info("%s serving", self.name, extra={"grpc_port": self.port})
        await self._stop.wait()
        await self.shutdown()
        return 1 if self.failed else 0

    async def shutdown(self) -> None:
        grace = self.settings.grpc.grace_period_s
        logger.info("%s shutting down", self.name, extra={"grace_period_s": grace})
        deadline = loop_time() + grace
        # NOT_SERVING first, while the server still answers, so health watchers and load balancers
        # see it and stop routing here; then the drain hooks; then stop, with what is left of the grace.
        await self._set_serving(health_pb2.HealthCheckResponse.NOT_SERVING)
        for hook in self._drain_hooks:
            remaining = deadline - loop_time()
            try:
                await asyncio.wait_for(hook(), timeout=max(remaining, 0.1))
            except Exception:
                logger.exception("drain hook %r failed", hook)
                self.failed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.server.stop(min(max(deadline - loop_time(), 0.0), self.settings.grpc.final_stop_s))
        self.telemetry.shutdown()
        logger.info("%s stopped", self.name)


def run_process(serve: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run a service's serve() on uvloop until it returns the process exit code."""
    return uvloop.run(serve())


def loop_time() -> float:
    return asyncio.get_running_loop().time()
