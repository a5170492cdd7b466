"""Operator credentials: a bearer token in the call metadata, checked against SHA-256 hashes.

Shared by the services whose write methods only operators may call (safety-policy, the
environment registry); each keeps its own operator table in its settings.

Only hashes live in settings; a presented token is hashed and compared with every stored hash in
constant time, so neither the comparison nor which operator matched leaks through timing.
"""

from __future__ import annotations

import hashlib
import hmac

import grpc

from gaelp.service.errors import PermissionDenied, Unauthenticated

_MAX_TOKEN_CHARS = 512


def token_hash(token: str) -> str:
    """The hex digest to store in a service's operators setting for this token."""
    return hashlib.sha256(token.encode()).hexdigest()


class OperatorAuth:
    def __init__(self, operator_hashes: dict[str, str]) -> None:
        self._hashes = {name: bytes.fromhex(digest) for name, digest in operator_hashes.items()}

    def operator(self, context: grpc.aio.ServicerContext) -> str:
        """The name of the operator whose token the call carries, or UNAUTHENTICATED/PERMISSION_DENIED."""
        token = _bearer_token(context)
        digest = hashlib.sha256(token.encode()).digest()
        matched = ""
        for name, stored in self._hashes.items():
            if hmac.compare_digest(digest, stored):
                matched = name
        if not matched:
            raise PermissionDenied("the operator token is not valid")
        return matched


def _bearer_token(context: grpc.aio.ServicerContext) -> str:
    values = [value for key, value in (context.invocation_metadata() or ()) if key == "authorization"]
    if not values:
        raise Unauthenticated("this method needs an operator token: 'authorization: Bearer <token>'")
    value = values[0]
    if not isinstance(value, str) or not value.startswith("Bearer ") or len(value) > _MAX_TOKEN_CHARS:
        raise Unauthenticated("the authorization metadata must be 'Bearer <token>'")
    token = value.removeprefix("Bearer ").strip()
    if not token:
        raise Unauthenticated("the operator token is empty")
    return token
