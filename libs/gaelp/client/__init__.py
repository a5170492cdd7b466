"""A typed Python client of the GAELP services (gRPC control, Kafka episode stream, trace files)."""

from gaelp.client.control import OrchestratorClient, SafetyPolicyClient
from gaelp.client.errors import (
    ClientError,
    Conflict,
    DeadlineExceeded,
    InvalidRequest,
    RunFailed,
    RunNotFound,
    ServiceUnavailable,
)

__all__ = [
    "ClientError",
    "Conflict",
    "DeadlineExceeded",
    "InvalidRequest",
    "OrchestratorClient",
    "RunFailed",
    "RunNotFound",
    "SafetyPolicyClient",
    "ServiceUnavailable",
]
