"""The request guard's server spans, over a real gRPC server and client on loopback: each call is a
SERVER span in the caller's trace, with the RPC attributes and status code, an error status only
where the server failed, and health probes untraced."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gaelp.bus.local_broker import free_port
from gaelp.config.sections.infra import TelemetrySettings
from gaelp.service import NotFound
from gaelp.service.request_guard import RequestGuardInterceptor
from gaelp.telemetry.setup import sampler_of
from gaelp.v1 import safety_pb2, safety_pb2_grpc

SERVICE = "gaelp.v1.SafetyPolicy"


class Ledgerless(safety_pb2_grpc.SafetyPolicyServicer):
    """Three answers a servicer gives: a response, a typed refusal, and a bug."""

    async def ReserveSpend(self, request: safety_pb2.ReserveSpendRequest,
                           context: grpc.aio.ServicerContext) -> safety_pb2.ReserveSpendResponse:
        return safety_pb2.ReserveSpendResponse(granted=True, reservation_id="r-1")

    async def CommitSpend(self, request: safety_pb2.CommitSpendRequest,
                          context: grpc.aio.ServicerContext) -> safety_pb2.CommitSpendResponse:
        raise NotFound(f"reservation {request.reservation_id} not found")

    async def ReleaseSpend(self, request: safety_pb2.ReleaseSpendRequest,
                           context: grpc.aio.ServicerContext) -> safety_pb2.ReleaseSpendResponse:
        raise RuntimeError("a bug")


@dataclass
class Traced:
    target: str
    channel: grpc.aio.Channel
    exporter: InMemorySpanExporter

    def spans(self, kind: SpanKind) -> dict[str, ReadableSpan]:
        return {span.name: span for span in self.exporter.get_finished_spans() if span.kind is kind}


@asynccontextmanager
async def serving(server_ratio: float, client_ratio: float) -> AsyncIterator[Traced]:
    """The guard's server and a traced client, each with its own sampler (as two processes have),
    exporting into one memory exporter."""
    exporter = InMemorySpanExporter()
    providers = [TracerProvider(sampler=sampler_of(TelemetrySettings(traces_sample_ratio=ratio)))
                 for ratio in (server_ratio, client_ratio)]
    for provider in providers:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    server_provider, client_provider = providers
    server = grpc.aio.server(interceptors=[RequestGuardInterceptor(server_provider.get_tracer("test"))])
    safety_pb2_grpc.add_SafetyPolicyServicer_to_server(Ledgerless(), server)
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    target = f"127.0.0.1:{server.add_insecure_port(f'127.0.0.1:{free_port()}')}"
    await server.start()
    channel = grpc.aio.insecure_channel(target,
                                        interceptors=list(aio_client_interceptors(tracer_provider=client_provider)))
    try:
        yield Traced(target, channel, exporter)
    finally:
        await channel.close()
        await server.stop(None)


@pytest.fixture
async def traced() -> AsyncIterator[Traced]:
    async with serving(server_ratio=1.0, client_ratio=1.0) as traced:
        yield traced


async def test_a_call_is_a_server_span_in_the_callers_trace(traced: Traced) -> None:
    stub = safety_pb2_grpc.SafetyPolicyStub(traced.channel)
    await stub.ReserveSpend(safety_pb2.ReserveSpendRequest(campaign_id="c"), timeout=5)
    server = traced.spans(SpanKind.SERVER)[f"{SERVICE}/ReserveSpend"]
    client = traced.spans(SpanKind.CLIENT)[f"/{SERVICE}/ReserveSpend"]
    assert server.parent is not None and server.parent.span_id == client.context.span_id
    assert server.context.trace_id == client.context.trace_id
    assert dict(server.attributes or {}) == {
        "rpc.system": "grpc", "rpc.service": SERVICE, "rpc.method": "ReserveSpend", "rpc.grpc.status_code": 0,
    }
    assert server.status.status_code is StatusCode.UNSET


async def test_a_callers_mistake_keeps_the_status_and_a_server_failure_sets_an_error(traced: Traced) -> None:
    stub = safety_pb2_grpc.SafetyPolicyStub(traced.channel)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.CommitSpend(safety_pb2.CommitSpendRequest(reservation_id="r-9"), timeout=5)
    assert refused.value.code() is grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await stub.ReleaseSpend(safety_pb2.ReleaseSpendRequest(reservation_id="r-1"), timeout=5)
    assert failed.value.code() is grpc.StatusCode.INTERNAL and "error id" in (failed.value.details() or "")
    undecodable = traced.channel.unary_unary(f"/{SERVICE}/ReserveSpend")
    with pytest.raises(grpc.aio.AioRpcError) as garbage:
        await undecodable(b"\xff\xff\xff", timeout=5)
    assert garbage.value.code() is grpc.StatusCode.INVALID_ARGUMENT

    spans = traced.spans(SpanKind.SERVER)
    not_found = spans[f"{SERVICE}/CommitSpend"]
    assert not_found.attributes is not None and not_found.attributes["rpc.grpc.status_code"] == 5
    assert not_found.status.status_code is StatusCode.UNSET
    internal = spans[f"{SERVICE}/ReleaseSpend"]
    assert internal.attributes is not None and internal.attributes["rpc.grpc.status_code"] == 13
    assert internal.status.status_code is StatusCode.ERROR
    assert [event.name for event in internal.events] == ["exception"]
    bad_body = spans[f"{SERVICE}/ReserveSpend"]
    assert bad_body.attributes is not None and bad_body.attributes["rpc.grpc.status_code"] == 3


async def test_health_probes_are_answered_and_not_traced(traced: Traced) -> None:
    stub = health_pb2_grpc.HealthStub(traced.channel)
    answer = await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    assert traced.spans(SpanKind.SERVER) == {}


async def test_the_server_samples_the_traces_it_starts_and_follows_a_callers_decision() -> None:
    request = safety_pb2.ReserveSpendRequest()
    for ratio, recorded in ((0.0, 0), (1.0, 1)):
        async with serving(server_ratio=ratio, client_ratio=1.0) as traced:
            async with grpc.aio.insecure_channel(traced.target) as untraced:  # a caller with no trace
                await safety_pb2_grpc.SafetyPolicyStub(untraced).ReserveSpend(request, timeout=5)
            roots = list(traced.spans(SpanKind.SERVER).values())
            assert len(roots) == recorded and all(span.parent is None for span in roots)
    for ratio in (0.0, 1.0):
        async with serving(server_ratio=1.0, client_ratio=ratio) as traced:
            await safety_pb2_grpc.SafetyPolicyStub(traced.channel).ReserveSpend(request, timeout=5)
            assert len(traced.spans(SpanKind.SERVER)) == ratio  # the caller decides, not the server
    async with serving(server_ratio=0.0, client_ratio=1.0) as traced:
        await safety_pb2_grpc.SafetyPolicyStub(traced.channel).ReserveSpend(request, timeout=5)
        server = traced.spans(SpanKind.SERVER)[f"{SERVICE}/ReserveSpend"]
        client = traced.spans(SpanKind.CLIENT)[f"/{SERVICE}/ReserveSpend"]
        assert server.parent is not None and server.parent.span_id == client.context.span_id
