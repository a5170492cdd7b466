"""Typed errors of the client: one class per gRPC status an operator acts on differently."""

from __future__ import annotations

import grpc


class ClientError(Exception):
    """A call failed; str(error) is one line naming the call, the target and the reason."""


class InvalidRequest(ClientError):
    """The service refused the arguments (INVALID_ARGUMENT)."""


class RunNotFound(ClientError):
    """No such run or resource (NOT_FOUND)."""


class Conflict(ClientError):
    """The request does not fit the current state, e.g. the run exists already (FAILED_PRECONDITION)."""


class ServiceUnavailable(ClientError):
    """Nothing answers at the target, or it is shutting down (UNAVAILABLE)."""


class DeadlineExceeded(ClientError):
    """No answer within the call's deadline (DEADLINE_EXCEEDED)."""


class RunFailed(ClientError):
    """wait() saw the run end in the failed state."""


_BY_CODE: dict[grpc.StatusCode, type[ClientError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequest,
    grpc.StatusCode.NOT_FOUND: RunNotFound,
    grpc.StatusCode.FAILED_PRECONDITION: Conflict,
    grpc.StatusCode.ALREADY_EXISTS: Conflict,
    grpc.StatusCode.UNAVAILABLE: ServiceUnavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
}


def from_rpc_error(error: grpc.RpcError, method: str, target: str) -> ClientError:
    """The one place gRPC statuses become client errors."""
    code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = (error.details() if isinstance(error, grpc.Call) else str(error)) or code.name
    first_line = details.strip().splitlines()[0] if details.strip() else code.name
    kind = _BY_CODE.get(code, ClientError)
    return kind(f"{method} at {target}: {code.name.lower()}: {first_line}")
