"""Server reflection on every service: the services and their methods, listed by reflection alone.

No project proto is imported here: a tool such as grpcurl sees exactly what this client sees.
Reflection is on by default (settings.grpc.reflection); the five processes come from conftest.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from gaelp.config import load_settings
from gaelp.service import ServiceRuntime

PROTOS = Path(__file__).resolve().parents[2] / "protos" / "gaelp" / "v1"
SERVICE_OF_PACKAGE = {
    "environment_registry": "gaelp.v1.EnvironmentRegistry",
    "safety_policy": "gaelp.v1.SafetyPolicy",
    "learner": "gaelp.v1.Learner",
    "metrics": "gaelp.v1.Metrics",
    "orchestrator": "gaelp.v1.Orchestrator",
}


def methods_in_protos(service_name: str) -> set[str]:
    """The rpc names of `service X { ... }` in the .proto sources (read as text, not compiled)."""
    short = service_name.rsplit(".", 1)[1]
    for path in PROTOS.glob("*.proto"):
        block = re.search(rf"service\s+{short}\s*\{{(.*?)\n\}}", path.read_text(), re.S)
        if block:
            return set(re.findall(r"rpc\s+(\w+)\s*\(", block[1]))
    raise AssertionError(f"no service {short} in {PROTOS}")


@pytest.mark.parametrize("package", list(SERVICE_OF_PACKAGE))
def test_every_service_and_method_is_listed_through_reflection(services: Any, package: str) -> None:
    with grpc.insecure_channel(services.target(package)) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        listed = set(database.get_services())
        service_name = SERVICE_OF_PACKAGE[package]
        assert listed >= {service_name, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}
        pool = DescriptorPool(database)
        for name in listed - {"grpc.reflection.v1alpha.ServerReflection"}:
            methods = {method.name for method in pool.FindServiceByName(name).methods}
            assert methods, name
        methods = {method.name for method in pool.FindServiceByName(service_name).methods}
        assert methods == methods_in_protos(service_name)
        # The request types resolve too: a tool can build a call from what reflection told it.
        for method in pool.FindServiceByName(service_name).methods:
            assert method.input_type.fields is not None and method.output_type.full_name


@pytest.mark.parametrize("enabled", [True, False])
async def test_the_reflection_setting_turns_it_on_and_off(enabled: bool) -> None:
    runtime = ServiceRuntime("reflection-probe", load_settings(grpc={"reflection": enabled}), 0)
    serving = asyncio.create_task(runtime.run())
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.port}") as channel:
            stub = channel.stream_stream(
                "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
            )
            if enabled:
                call = stub(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
                answers = [response async for response in call]
                names = {service.name for service in answers[0].list_services_response.service}
                assert "grpc.health.v1.Health" in names
            else:
                # No request sent: the server answers UNIMPLEMENTED at once, and a request still
                # being sent then would be reported by grpc's core as INTERNAL instead.
                call = stub(iter([]), timeout=10)
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    [response async for response in call]
                assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        runtime.request_stop()
        await serving
