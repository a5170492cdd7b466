"""What every service process shares: the gRPC server lifecycle, errors, validation, clients."""

from gaelp.service.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ServiceError,
    Unauthenticated,
    rpc,
    stream_rpc,
)
from gaelp.service.runtime import ServiceRuntime, run_process

__all__ = [
    "AlreadyExists",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ServiceError",
    "ServiceRuntime",
    "Unauthenticated",
    "rpc",
    "run_process",
    "stream_rpc",
]
