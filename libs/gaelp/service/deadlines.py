"""A client interceptor that gives every outgoing unary call a deadline when the caller set none."""

from __future__ import annotations

from typing import Any

import grpc


class DefaultDeadlineInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, default_timeout_s: float) -> None:
        self.default_timeout_s = default_timeout_s

    async def intercept_unary_unary(
        self, continuation: Any, client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        if client_call_details.timeout is None:
            client_call_details = grpc.aio.ClientCallDetails(
                method=client_call_details.method,
                timeout=self.default_timeout_s,
                metadata=client_call_details.metadata,
                credentials=client_call_details.credentials,
                wait_for_ready=client_call_details.wait_for_ready,
            )
        return await continuation(client_call_details, request)
