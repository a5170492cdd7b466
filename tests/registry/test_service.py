"""The registry process over gRPC, on SQLite and PostgreSQL: immutable versions, resolution, errors.

Every call passes a timeout (T): the server rejects no call for lacking a deadline,
so the deadline is the caller's job (ServiceRuntime.client_channel adds one by default).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from registry_support import OPERATOR_METADATA

from gaelp.v1 import common_pb2, registry_pb2, registry_pb2_grpc

T = 5.0  # seconds: the deadline of every call
RegistryStub = registry_pb2_grpc.EnvironmentRegistryStub
StartRegistry = Callable[..., Any]


def spec(env_id: str = "ad-market", version: str = "1.0.0", **fields: object) -> registry_pb2.EnvironmentSpec:
    message = registry_pb2.EnvironmentSpec(
        id=env_id,
        version=version,
        entry_point="gaelp.sim:make_ad_vector_env",
        config_json='{"num_envs": 8, "level": 0}',
        phases=[common_pb2.PHASE_SIMULATION],
        tags=["simulator"],
        description="test simulator",
    )
    for name, value in fields.items():
        if isinstance(value, list):
            del getattr(message, name)[:]
            getattr(message, name).extend(value)
        else:
            setattr(message, name, value)
    return message


async def register(
    stub: RegistryStub, message: registry_pb2.EnvironmentSpec
) -> registry_pb2.RegisterEnvironmentResponse:
    return await stub.Register(
        registry_pb2.RegisterEnvironmentRequest(spec=message), timeout=T, metadata=OPERATOR_METADATA
    )


async def get(stub: RegistryStub, env_id: str, version: str = "") -> registry_pb2.EnvironmentSpec:
    answer = await stub.Get(registry_pb2.GetEnvironmentRequest(id=env_id, version=version), timeout=T)
    return answer.spec


async def status_of(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call  # type: ignore[misc]
    return error.value.code(), error.value.details() or ""


async def test_versions_are_immutable(
    database_url: str, start_registry: StartRegistry, registry_stub_for
) -> None:
    stub = registry_stub_for(start_registry(database_url))

    first = await register(stub, spec())
    assert first.created
    assert first.spec.config_json == '{"level":0,"num_envs":8}'  # stored canonical
    assert first.spec.health == registry_pb2.ENVIRONMENT_HEALTH_UNSPECIFIED  # local: not probed

    # The identical spec again, even with JSON spelled differently and state fields set, is a no-op.
    retry = spec(config_json='{"level":0,   "num_envs":8}', deprecated=True, health_detail="ignored")
    again = await register(stub, retry)
    assert not again.created
    assert again.spec == first.spec

    code, details = await status_of(register(stub, spec(config_json='{"num_envs": 16, "level": 0}')))
    assert code == grpc.StatusCode.ALREADY_EXISTS
    assert "differs in: config_json" in details and "immutable" in details
    code, details = await status_of(register(stub, spec(entry_point="gaelp.sim:make_ad_env")))
    assert code == grpc.StatusCode.ALREADY_EXISTS and "entry_point" in details

    assert await get(stub, "ad-market", "1.0.0") == first.spec
    bumped = await register(stub, spec(version="1.0.1", config_json='{"num_envs": 16, "level": 0}'))
    assert bumped.created
    assert json.loads((await get(stub, "ad-market")).config_json) == {"level": 0, "num_envs": 16}


async def test_latest_compatible_resolution(
    database_url: str, start_registry: StartRegistry, registry_stub_for
) -> None:
    stub = registry_stub_for(start_registry(database_url))
    for version in ["1.0.0", "1.2.0", "1.2.9", "1.3.1", "2.0.0", "2.1.0-beta.1", "0.9.0"]:
        assert (await register(stub, spec(version=version, config_json=f'{{"v": "{version}"}}'))).created
    await register(stub, spec("historical", "3.0.0", phases=[common_pb2.PHASE_HISTORICAL], tags=["ope"]))

    async def resolved(constraint: str) -> str:
        return (await get(stub, "ad-market", constraint)).version

    assert await resolved("") == "2.0.0"  # prereleases are never "latest"
    assert await resolved("^1.2") == "1.3.1"
    assert await resolved("~1.2.0") == "1.2.9"
    assert await resolved(">=1.0,<2") == "1.3.1"
    assert await resolved("^0.9") == "0.9.0"
    assert await resolved(">=2.1.0-beta.0") == "2.1.0-beta.1"
    assert await resolved("2.1.0-beta.1") == "2.1.0-beta.1"

    deprecated = await stub.Deprecate(
        registry_pb2.DeprecateEnvironmentRequest(id="ad-market", version="1.3.1", reason="reward bug"),
        timeout=T,
        metadata=OPERATOR_METADATA,
    )
    assert deprecated.spec.deprecated and deprecated.spec.deprecation_reason == "reward bug"
    assert await resolved("^1.2") == "1.2.9"  # the deprecated one is skipped by constraints
    exact = await get(stub, "ad-market", "1.3.1")  # but still served when asked by exact version
    assert exact.deprecated and exact.version == "1.3.1"

    code, details = await status_of(get(stub, "ad-market", "^3"))
    assert code == grpc.StatusCode.NOT_FOUND and "registered versions: 2.1.0-beta.1, 2.0.0" in details
    code, details = await status_of(get(stub, "ad-market", "~1.3.0"))
    assert code == grpc.StatusCode.NOT_FOUND and "deprecated matches: 1.3.1" in details
    code, _ = await status_of(get(stub, "ad-market", "7.7.7"))
    assert code == grpc.StatusCode.NOT_FOUND
    code, details = await status_of(get(stub, "no-such-env"))
    assert code == grpc.StatusCode.NOT_FOUND and "no environment 'no-such-env'" in details

    async def listed(**request: object) -> list[tuple[str, str]]:
        answer = await stub.List(registry_pb2.ListEnvironmentsRequest(**request), timeout=T)
        return [(s.id, s.version) for s in answer.specs]

    assert await listed(latest_only=True) == [("ad-market", "2.0.0"), ("historical", "3.0.0")]
    assert await listed(phase=common_pb2.PHASE_HISTORICAL) == [("historical", "3.0.0")]
    assert await listed(tag="ope") == [("historical", "3.0.0")]
    assert await listed(phase=common_pb2.PHASE_SIMULATION) == [
        ("ad-market", v) for v in ["2.1.0-beta.1", "2.0.0", "1.2.9", "1.2.0", "1.0.0", "0.9.0"]
    ]
    assert ("ad-market", "1.3.1") in await listed(include_deprecated=True)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'registry.db'}"


BAD_SPECS: list[tuple[str, dict[str, object]]] = [
    ("spec.id is required", {"id": ""}),
    ("spec.id must start", {"id": "bad id!"}),
    ("not a semantic version", {"version": "1.2"}),
    ("build metadata", {"version": "1.2.3+build.7"}),
    ("spec.entry_point is required", {"entry_point": ""}),
    ("must be 'package.module:callable'", {"entry_point": "gaelp.sim.make_ad_env"}),
    ("not valid JSON", {"config_json": "{level: 0}"}),
    ("not valid JSON", {"config_json": '{"x": NaN}'}),
    ("must be a JSON object", {"config_json": "[1, 2]"}),
    ("larger than", {"config_json": json.dumps({"blob": "x" * 70_000})}),
    ("at least one phase", {"phases": []}),
    ("spec.phases has an unknown", {"phases": [common_pb2.PHASE_UNSPECIFIED]}),
    ("spec.phases has an unknown", {"phases": [42]}),
    ("spec.tags", {"tags": ["Has Space"]}),
    ("spec.remote_protocol is required", {"remote_url": "http://sandbox:8765/mcp"}),
    ("spec.remote_protocol is set but", {"remote_protocol": registry_pb2.REMOTE_PROTOCOL_MCP}),
    (
        "must be an http(s) URL",
        {"remote_url": "ftp://x/", "remote_protocol": registry_pb2.REMOTE_PROTOCOL_HTTP},
    ),
    ("must be empty or equal", {"entry_point": "http://a/mcp", "remote_url": "http://b/mcp"}),
    ("spec.description is longer", {"description": "d" * 5000}),
    ("not in an allowed module", {"entry_point": "os:system"}),
    ("not in an allowed module", {"entry_point": "builtins:eval"}),
    ("not in an allowed module", {"entry_point": "gaelp.simulator_of_mine:make"}),  # a prefix, not a module
    ("nests 20000 levels deep", {"config_json": '{"a":' + "[" * 19_999 + "]" * 19_999 + "}"}),
    ("not valid Unicode", {"config_json": '{"name": "\\ud800"}'}),
    ("out of the finite range", {"config_json": '{"level": 1e999}'}),
    ("spec.tags", {"tags": ["x" * 100_000]}),
]


async def test_bad_input_is_invalid_argument(
    sqlite_url: str, start_registry: StartRegistry, registry_stub_for
) -> None:
    stub = registry_stub_for(start_registry(sqlite_url))
    for expected, fields in BAD_SPECS:
        code, details = await status_of(register(stub, spec(**fields)))
        assert (code, expected in details) == (grpc.StatusCode.INVALID_ARGUMENT, True), (fields, details)
        assert len(details) < 400, details  # a short prefix of the offending value at most

    code, details = await status_of(stub.Register(
        registry_pb2.RegisterEnvironmentRequest(), timeout=T, metadata=OPERATOR_METADATA
    ))
    assert (code, details) == (grpc.StatusCode.INVALID_ARGUMENT, "spec is required")
    for request, expected in [
        (registry_pb2.GetEnvironmentRequest(id=""), "id is required"),
        (registry_pb2.GetEnvironmentRequest(id="x", version="^banana"), "version:"),
        (registry_pb2.GetEnvironmentRequest(id="x", version="1.0.0+b"), "build metadata"),
    ]:
        code, details = await status_of(stub.Get(request, timeout=T))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and expected in details
    for request, expected in [
        (registry_pb2.ListEnvironmentsRequest(phase=9), "phase has an unknown"),
        (registry_pb2.ListEnvironmentsRequest(tag="UPPER"), "tag"),
    ]:
        code, details = await status_of(stub.List(request, timeout=T))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and expected in details
    for request, expected in [
        (registry_pb2.DeprecateEnvironmentRequest(id="x", version="1.0.0"), "reason is required"),
        (
            registry_pb2.DeprecateEnvironmentRequest(id="x", version="^1", reason="r"),
            "not a semantic version",
        ),
    ]:
        code, details = await status_of(stub.Deprecate(request, timeout=T, metadata=OPERATOR_METADATA))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and expected in details
    code, _ = await status_of(
        stub.Deprecate(
            registry_pb2.DeprecateEnvironmentRequest(id="x", version="1.0.0", reason="r"),
            timeout=T,
            metadata=OPERATOR_METADATA,
        )
    )
    assert code == grpc.StatusCode.NOT_FOUND

    # A URL entry point is a remote environment: remote_url is filled from it.
    remote = await register(
        stub,
        spec("remote", entry_point="http://127.0.0.1:9/", remote_protocol=registry_pb2.REMOTE_PROTOCOL_HTTP),
    )
    assert remote.spec.remote_url == "http://127.0.0.1:9/"
    assert remote.spec.health in {
        registry_pb2.ENVIRONMENT_HEALTH_UNKNOWN,
        registry_pb2.ENVIRONMENT_HEALTH_UNHEALTHY,
    }


async def test_writes_need_an_operator_token_and_reads_do_not(
    sqlite_url: str, start_registry: StartRegistry, registry_stub_for
) -> None:
    stub = registry_stub_for(start_registry(sqlite_url))
    request = registry_pb2.RegisterEnvironmentRequest(spec=spec())
    code, _ = await status_of(stub.Register(request, timeout=T))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    wrong = (("authorization", "Bearer not-the-token"),)
    code, _ = await status_of(stub.Register(request, timeout=T, metadata=wrong))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    deprecate = registry_pb2.DeprecateEnvironmentRequest(id="ad-market", version="1.0.0", reason="r")
    code, _ = await status_of(stub.Deprecate(deprecate, timeout=T))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    code, _ = await status_of(get(stub, "ad-market"))
    assert code == grpc.StatusCode.NOT_FOUND  # nothing was registered by the refused calls

    assert (await register(stub, spec())).created
    assert (await get(stub, "ad-market")).version == "1.0.0"
    listed = await stub.List(registry_pb2.ListEnvironmentsRequest(), timeout=T)
    assert [s.id for s in listed.specs] == ["ad-market"]
