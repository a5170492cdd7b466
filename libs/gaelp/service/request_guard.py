"""The server interceptor every call passes: its server span, and every method's bad input and
surprises answered the same way.

grpc.aio decodes a request with the handler's request_deserializer before any servicer code runs;
when that fails it logs a traceback and answers UNKNOWN "Unexpected DecodeError". Here every unary
request's deserializer is wrapped so a body that does not decode becomes an UndecodableRequest, and
the wrapped behaviour answers it with INVALID_ARGUMENT (logged as one warning line). Any exception
a behaviour lets through is mapped by errors.status_of: a ServiceError to its code, anything else
to INTERNAL with an error id in the log — never UNKNOWN.

The same wrapper opens the call's OpenTelemetry server span (a child of the caller's span when the
metadata carries a W3C traceparent), named and attributed as OpenTelemetry's RPC conventions say:
`rpc.system`, `rpc.service`, `rpc.method`, `rpc.grpc.status_code`, and an error status for the
codes that mean the server failed (UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE,
DATA_LOSS); a caller's mistake (INVALID_ARGUMENT, NOT_FOUND, ...) leaves it unset. One wrapper
does both because a second per-call layer costs CPU on every call: opentelemetry-instrumentation-
grpc's server interceptor wraps the servicer context in a proxy, reads the metadata twice and parses
the peer (with it, 0.76-0.78 ms of service CPU a ledger reservation; with these spans 0.70-0.71 ms;
docs/ledger.md). grpc.health.v1 calls are guarded but not traced: probes would flood the traces.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from gaelp.service.errors import status_of

logger = logging.getLogger(__name__)

UNTRACED_PREFIX = "/grpc.health.v1.Health/"
SERVER_FAULTS = frozenset({
    grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DATA_LOSS,
})


@dataclass(frozen=True)
class UndecodableRequest:
    """What the wrapped deserializer returns for bytes the message type cannot parse."""

    size: int
    reason: str


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def deserialize(body: bytes) -> Any:
        try:
            return deserializer(body)
        except Exception as error:  # protobuf raises DecodeError, and others for odd wire data
            return UndecodableRequest(len(body), type(error).__name__)

    return deserialize


@dataclass(frozen=True)
class _Method:
    """What every call of one method shares: its full name, span name and span attributes."""

    path: str
    span_name: str
    attributes: dict[str, str | int]
    traced: bool

    @classmethod
    def of(cls, path: str) -> _Method:
        name = path.lstrip("/")
        service, _, method = name.partition("/")
        return cls(path, name, {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method},
                   not path.startswith(UNTRACED_PREFIX))


def _caller_context(context: grpc.aio.ServicerContext) -> Context | None:
    """The caller's trace context from the call's metadata, None when it carries none."""
    metadata = context.invocation_metadata()
    if not metadata:
        return None
    carrier = {item.key: item.value for item in metadata if isinstance(item.value, str)}
    return propagate.extract(carrier) if carrier else None


def _end_status(span: Span, code: grpc.StatusCode, details: str | None) -> None:
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code in SERVER_FAULTS:
        span.set_status(Status(StatusCode.ERROR, f"{code.name}: {details or ''}"))


class _Guard:
    """The per-call work for one method: refuse undecodable bodies, open the span, map surprises."""

    def __init__(self, method: _Method, tracer: trace.Tracer | None) -> None:
        self.method = method
        self.tracer = tracer if method.traced else None

    @contextmanager
    def span(self, context: grpc.aio.ServicerContext) -> Iterator[Span]:
        if self.tracer is None:
            yield trace.INVALID_SPAN
            return
        with self.tracer.start_as_current_span(
            self.method.span_name, context=_caller_context(context), kind=SpanKind.SERVER,
            attributes=self.method.attributes, record_exception=False, set_status_on_exception=False,
        ) as span:
            yield span

    async def refuse_undecodable(
        self, context: grpc.aio.ServicerContext, request: UndecodableRequest
    ) -> None:
        logger.warning("undecodable request to %s", self.method.path,
                       extra={"bytes": request.size, "reason": request.reason})
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                            f"the request body ({request.size} bytes) is not a valid message of this method")

    async def answer(self, span: Span, context: grpc.aio.ServicerContext, error: Exception) -> None:
        code, details = status_of(error, self.method.path)
        if code in SERVER_FAULTS:
            span.record_exception(error)
        _end_status(span, code, details)
        await context.abort(code, details)

    @asynccontextmanager
    async def call(self, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        """One call of the method: its span around the behaviour, whose status it records."""
        with self.span(context) as span:
            try:
                if isinstance(request, UndecodableRequest):
                    await self.refuse_undecodable(context, request)
                yield
            except grpc.aio.AbortError:
                _end_status(span, context.code() or grpc.StatusCode.UNKNOWN, context.details())
                raise
            except Exception as error:
                await self.answer(span, context, error)
            _end_status(span, context.code() or grpc.StatusCode.OK, context.details())

    def unary(self, behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
            async with self.call(request, context):
                return await behavior(request, context)

        return guarded

    def stream(self, behavior: Callable[..., Any]) -> Callable[..., Any]:
        if not inspect.isasyncgenfunction(behavior):
            # A coroutine that writes to the context (grpc.health.v1 Watch): guarded like a unary one.
            return self.unary(behavior)

        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async with self.call(request, context):
                async for item in behavior(request, context):
                    yield item

        return guarded


class RequestGuardInterceptor(grpc.aio.ServerInterceptor):
    """The one server interceptor: the call's span, undecodable bodies -> INVALID_ARGUMENT, surprises
    -> INTERNAL. Without a tracer it opens no spans. A method's guarded handler is built once and
    reused while the server hands out the same handler for it."""

    def __init__(self, tracer: trace.Tracer | None = None) -> None:
        self._tracer = tracer
        self._guarded: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_streaming:
            # Unknown methods answer UNIMPLEMENTED; request streams (reflection) decode per message
            # inside their own iterator and are left as they are.
            return handler
        path = handler_call_details.method
        known = self._guarded.get(path)
        if known is not None and known[0] is handler:
            return known[1]
        guarded = self._guard(path, handler)
        self._guarded[path] = (handler, guarded)  # one entry per method the server serves
        return guarded

    def _guard(self, path: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        guard = _Guard(_Method.of(path), self._tracer)
        deserializer = _tolerant(handler.request_deserializer)
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(
                guard.stream(handler.unary_stream),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        return grpc.unary_unary_rpc_method_handler(
            guard.unary(handler.unary_unary),
            request_deserializer=deserializer,
            response_serializer=handler.response_serializer,
        )
