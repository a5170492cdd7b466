"""The safety-policy calls the money phases make, each with a deadline, on an aio channel."""

from __future__ import annotations

import grpc

from gaelp.v1 import common_pb2, safety_pb2, safety_pb2_grpc


class SafetyCalls:
    def __init__(self, target: str, deadline_s: float) -> None:
        self.target = target
        self.deadline_s = deadline_s
        self._channel: grpc.aio.Channel | None = None
        self._stub: safety_pb2_grpc.SafetyPolicyStub | None = None

    @property
    def stub(self) -> safety_pb2_grpc.SafetyPolicyStub:
        if self._stub is None:
            self._channel = grpc.aio.insecure_channel(self.target)
            self._stub = safety_pb2_grpc.SafetyPolicyStub(self._channel)
        return self._stub

    async def close(self) -> None:
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            await channel.close()

    async def reserve(self, campaign_id: str, phase: int, amount: float, key: str, episode: str,
                      run_id: str, bid: float) -> safety_pb2.ReserveSpendResponse:
        request = safety_pb2.ReserveSpendRequest(
            campaign_id=campaign_id, phase=phase, amount=amount, idempotency_key=key,  # type: ignore[arg-type]
            episode_id=episode, run_id=run_id, bid=bid)
        return await self.stub.ReserveSpend(request, timeout=self.deadline_s)

    async def commit(self, reservation_id: str, actual: float, key: str) -> safety_pb2.CommitSpendResponse:
        request = safety_pb2.CommitSpendRequest(reservation_id=reservation_id, actual_amount=actual,
                                                idempotency_key=key)
        return await self.stub.CommitSpend(request, timeout=self.deadline_s)

    async def budget_status(self, campaign_id: str, phase: int) -> safety_pb2.BudgetStatus:
        request = safety_pb2.GetBudgetStatusRequest(campaign_id=campaign_id, phase=phase)  # type: ignore[arg-type]
        return await self.stub.GetBudgetStatus(request, timeout=self.deadline_s)

    async def validate_creative(self, campaign_id: str, phase: int, headline: str, body: str,
                                scores: dict[str, float]) -> safety_pb2.ValidateCreativeResponse:
        request = safety_pb2.ValidateCreativeRequest(campaign_id=campaign_id, phase=phase,  # type: ignore[arg-type]
                                                     headline=headline, body=body, scores=scores)
        return await self.stub.ValidateCreative(request, timeout=self.deadline_s)

    async def request_approval(self, kind: str, campaign_id: str, run_id: str, phase: int,
                               justification: str, amount: float = 0.0) -> safety_pb2.ApprovalRequest:
        approval = safety_pb2.ApprovalRequest(kind=kind, campaign_id=campaign_id, run_id=run_id,
                                              phase=phase, justification=justification,  # type: ignore[arg-type]
                                              amount=amount)
        response = await self.stub.RequestApproval(safety_pb2.RequestApprovalRequest(approval=approval),
                                                   timeout=self.deadline_s)
        return response.approval

    async def pending(self) -> list[safety_pb2.ApprovalRequest]:
        response = await self.stub.ListPending(safety_pb2.ListPendingRequest(), timeout=self.deadline_s)
        return list(response.approvals)


REAL_TESTING = common_pb2.PHASE_REAL_TESTING
SCALED = common_pb2.PHASE_SCALED
