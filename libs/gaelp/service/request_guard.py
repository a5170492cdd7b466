"""The server interceptor that answers every method's bad input and surprises the same way.

grpc.aio decodes a request with the handler's request_deserializer before any servicer code runs;
when that fails it logs a traceback and answers UNKNOWN "Unexpected DecodeError". Here every unary
request's deserializer is wrapped so a body that does not decode becomes an UndecodableRequest, and
the wrapped behaviour answers it with INVALID_ARGUMENT (logged as one warning line). Any exception
a behaviour lets through is mapped by errors.status_of: a ServiceError to its code, anything else
to INTERNAL with an error id in the log — never UNKNOWN.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from gaelp.service.errors import status_of

logger = logging.getLogger(__name__)


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


async def _answer(context: grpc.aio.ServicerContext, method: str, error: Exception) -> None:
    code, details = status_of(error, method)
    await context.abort(code, details)


async def _refuse_undecodable(
    context: grpc.aio.ServicerContext, method: str, request: UndecodableRequest
) -> None:
    logger.warning(
        "undecodable request to %s", method, extra={"bytes": request.size, "reason": request.reason}
    )
    await context.abort(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"the request body ({request.size} bytes) is not a valid message of this method",
    )


def _guard_unary_response(
    method: str, behavior: Callable[..., Awaitable[Any]]
) -> Callable[..., Awaitable[Any]]:
    async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, UndecodableRequest):
            await _refuse_undecodable(context, method, request)
        try:
            return await behavior(request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            await _answer(context, method, error)

    return guarded


def _guard_stream_response(method: str, behavior: Callable[..., Any]) -> Callable[..., Any]:
    if not inspect.isasyncgenfunction(behavior):
        # A coroutine that writes to the context (grpc.health.v1 Watch): guarded like a unary one.
        return _guard_unary_response(method, behavior)

    async def guarded(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        if isinstance(request, UndecodableRequest):
            await _refuse_undecodable(context, method, request)
        try:
            async for item in behavior(request, context):
                yield item
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            await _answer(context, method, error)

    return guarded


class RequestGuardInterceptor(grpc.aio.ServerInterceptor):
    """Outermost server interceptor: undecodable bodies -> INVALID_ARGUMENT, surprises -> INTERNAL."""

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
        method = handler_call_details.method
        deserializer = _tolerant(handler.request_deserializer)
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(
                _guard_stream_response(method, handler.unary_stream),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        return grpc.unary_unary_rpc_method_handler(
            _guard_unary_response(method, handler.unary_unary),
            request_deserializer=deserializer,
            response_serializer=handler.response_serializer,
        )
