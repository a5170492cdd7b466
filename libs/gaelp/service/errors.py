"""Typed service errors and the decorators that turn them into gRPC status codes.

Servicer methods raise InvalidArgument("amount must be finite") and the like; @rpc / @stream_rpc
abort the call with the matching code and the message, so every method answers bad input the same
way and unexpected exceptions are logged with their trace and an error id before becoming INTERNAL
(the caller gets the id, never the trace). The server interceptor of gaelp.service.request_guard
applies the same mapping to every method, decorated or not.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

logger = logging.getLogger(__name__)

# Status details travel in a response header; gRPC's default metadata limit is 8 KiB, and a longer
# message would turn the caller's INVALID_ARGUMENT into RESOURCE_EXHAUSTED.
MAX_DETAILS_CHARS = 1024

Req = TypeVar("Req")
Resp = TypeVar("Resp")


class ServiceError(Exception):
    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidArgument(ServiceError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ServiceError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unauthenticated(ServiceError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(ServiceError):
    code = grpc.StatusCode.PERMISSION_DENIED


def status_of(error: Exception, method: str) -> tuple[grpc.StatusCode, str]:
    """The status code and details a servicer's exception answers with; an unexpected exception is
    logged with its trace under a fresh error id, and the caller gets INTERNAL with that id."""
    if isinstance(error, ServiceError):
        return error.code, bounded_details(str(error))
    error_id = uuid.uuid4().hex[:16]
    logger.error(
        "unhandled error in %s (error id %s)", method, error_id, exc_info=error, extra={"error_id": error_id}
    )
    return grpc.StatusCode.INTERNAL, f"internal error {type(error).__name__} (error id {error_id})"


def bounded_details(message: str) -> str:
    """The message as valid UTF-8 (a lone surrogate becomes its escape) of at most MAX_DETAILS_CHARS."""
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(message) <= MAX_DETAILS_CHARS:
        return message
    return message[: MAX_DETAILS_CHARS - 3] + "..."


async def _abort(context: grpc.aio.ServicerContext, method: str, error: Exception) -> None:
    code, details = status_of(error, method)
    await context.abort(code, details)


def rpc(
    method: Callable[[Any, Req, grpc.aio.ServicerContext], Awaitable[Resp]],
) -> Callable[[Any, Req, grpc.aio.ServicerContext], Awaitable[Resp]]:
    """Wrap a unary servicer method: ServiceError -> its status code, anything else -> INTERNAL."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Req, context: grpc.aio.ServicerContext) -> Resp:
        try:
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            await _abort(context, method.__qualname__, error)
            raise  # unreachable: abort raises

    return wrapper


def stream_rpc(
    method: Callable[[Any, Req, grpc.aio.ServicerContext], AsyncIterator[Resp]],
) -> Callable[[Any, Req, grpc.aio.ServicerContext], AsyncIterator[Resp]]:
    """The server-streaming counterpart of @rpc."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Req, context: grpc.aio.ServicerContext) -> AsyncIterator[Resp]:
        try:
            async for item in method(self, request, context):
                yield item
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            await _abort(context, method.__qualname__, error)

    return wrapper
