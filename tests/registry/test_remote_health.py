"""Health of a remote environment going down and up, on SQLite and PostgreSQL.

The remote environment is the real platform sandbox (python -m gaelp.sim.platform.sandbox) in its
own process: the registry probes it over MCP (session + tool list) and over plain HTTP (/healthz),
and the test hangs it (SIGSTOP), kills it and starts it again while reading health through Get.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from typing import Any

from registry_support import OPERATOR_METADATA

from gaelp.v1 import common_pb2, registry_pb2, registry_pb2_grpc

T = 5.0  # seconds: the deadline of every call
HEALTHY = registry_pb2.ENVIRONMENT_HEALTH_HEALTHY
UNHEALTHY = registry_pb2.ENVIRONMENT_HEALTH_UNHEALTHY


async def wait_for_health(
    stub: registry_pb2_grpc.EnvironmentRegistryStub, env_id: str, expected: int, timeout_s: float = 20.0
) -> registry_pb2.EnvironmentSpec:
    deadline = time.monotonic() + timeout_s
    while True:
        answer = await stub.Get(registry_pb2.GetEnvironmentRequest(id=env_id, version="1.0.0"), timeout=T)
        if answer.spec.health == expected:
            return answer.spec
        if time.monotonic() > deadline:
            name = registry_pb2.EnvironmentHealth.Name
            raise AssertionError(
                f"{env_id} still {name(answer.spec.health)} ({answer.spec.health_detail!r}), "
                f"wanted {name(expected)}"
            )
        await asyncio.sleep(0.1)


async def test_health_of_a_remote_environment_going_down_and_up(
    database_url: str, start_registry: Callable[..., Any], registry_stub_for: Callable[..., Any], sandbox: Any
) -> None:
    sandbox.start()
    registry = start_registry(database_url, ENVIRONMENT_REGISTRY_HEALTH_TIMEOUT_S="1")
    stub = registry_stub_for(registry)
    mcp_spec = registry_pb2.EnvironmentSpec(
        id="platform-sandbox",
        version="1.0.0",
        entry_point="gaelp.sim.platform.factory:make_platform_connector",
        config_json=f'{{"url": "{sandbox.url}"}}',
        phases=[common_pb2.PHASE_REAL_TESTING, common_pb2.PHASE_SCALED],
        remote_url=sandbox.url,
        remote_protocol=registry_pb2.REMOTE_PROTOCOL_MCP,
    )
    http_spec = registry_pb2.EnvironmentSpec(
        id="sandbox-healthz",
        version="1.0.0",
        entry_point=f"http://127.0.0.1:{sandbox.port}/healthz",
        phases=[common_pb2.PHASE_REAL_TESTING],
        remote_protocol=registry_pb2.REMOTE_PROTOCOL_HTTP,
    )
    for spec in (mcp_spec, http_spec):
        registered = await stub.Register(
            registry_pb2.RegisterEnvironmentRequest(spec=spec), timeout=T, metadata=OPERATOR_METADATA
        )
        assert registered.created

    up = await wait_for_health(stub, "platform-sandbox", HEALTHY)
    assert "gaelp-platform-sandbox" in up.health_detail and "create_campaign" in up.health_detail
    assert up.HasField("health_checked_at")
    assert "HTTP 200" in (await wait_for_health(stub, "sandbox-healthz", HEALTHY)).health_detail

    # Hung: the port accepts connections but nothing answers, so the probe's timeout decides.
    assert sandbox.process is not None
    sandbox.process.send_signal(signal.SIGSTOP)
    try:
        hung = await wait_for_health(stub, "platform-sandbox", UNHEALTHY)
        assert "no answer within 1 s" in hung.health_detail
        assert (
            "no answer within 1 s"
            in (await wait_for_health(stub, "sandbox-healthz", UNHEALTHY)).health_detail
        )
    finally:
        sandbox.process.send_signal(signal.SIGCONT)
    await wait_for_health(stub, "platform-sandbox", HEALTHY)

    # Down: the process is gone and connections are refused.
    sandbox.stop()
    down = await wait_for_health(stub, "platform-sandbox", UNHEALTHY)
    assert "unreachable" in down.health_detail
    assert down.health_checked_at.ToDatetime() >= up.health_checked_at.ToDatetime()
    await wait_for_health(stub, "sandbox-healthz", UNHEALTHY)

    # Up again on the same address: reported healthy without touching the registry.
    sandbox.start()
    again = await wait_for_health(stub, "platform-sandbox", HEALTHY)
    assert "create_campaign" in again.health_detail
    await wait_for_health(stub, "sandbox-healthz", HEALTHY)

    # List reports the same health with the spec.
    listed = await stub.List(registry_pb2.ListEnvironmentsRequest(phase=common_pb2.PHASE_SCALED), timeout=T)
    assert [(s.id, s.health) for s in listed.specs] == [("platform-sandbox", HEALTHY)]
