"""Blocking clients of the money gates: approvals and the emergency stop (safety policy), and the
orchestrator's MoneyControl API (pause every money-phase campaign, a run's money report)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from gaelp.client.control import _Client
from gaelp.client.errors import ClientError, RunNotFound, from_rpc_error
from gaelp.v1 import money_pb2, money_pb2_grpc, safety_pb2, safety_pb2_grpc

R = TypeVar("R", bound=Message)


def _operator(token: str) -> tuple[tuple[str, str], ...]:
    if not token:
        raise ClientError("no operator token: set GAELP_OPERATOR_TOKEN (settings: operator.token)")
    return (("authorization", f"Bearer {token}"),)


class ApprovalsClient(_Client):
    """List, show and decide approvals; stop and request the resume (safety policy)."""

    def __init__(self, target: str, deadline_s: float = 10.0, operator_token: str = "") -> None:
        super().__init__(target, deadline_s)
        self._stub = safety_pb2_grpc.SafetyPolicyStub(self._channel)
        self._token = operator_token

    def pending(self) -> list[safety_pb2.ApprovalRequest]:
        response = self._call("ListPending", self._stub.ListPending, safety_pb2.ListPendingRequest())
        return list(response.approvals)

    def show(self, approval_id: str) -> safety_pb2.ApprovalRequest:
        """A pending approval (the safety policy serves pending ones only; decided ones are in its
        audit log)."""
        for approval in self.pending():
            if approval.approval_id == approval_id:
                return approval
        raise RunNotFound(f"ListPending at {self.target}: approval {approval_id} is not pending")

    def decide(self, approval_id: str, approve: bool, comment: str = "") -> safety_pb2.ApprovalRequest:
        request = safety_pb2.DecideRequest(approval_id=approval_id, approve=approve, comment=comment)
        return self._as_operator("Decide", self._stub.Decide, request).approval

    def emergency_stop(self, reason: str) -> safety_pb2.EmergencyStopResponse:
        request = safety_pb2.EmergencyStopRequest(reason=reason)
        return self._as_operator("EmergencyStop", self._stub.EmergencyStop, request)

    def request_resume(self, justification: str) -> safety_pb2.ApprovalRequest:
        approval = safety_pb2.ApprovalRequest(kind="resume_after_stop", justification=justification)
        response = self._call("RequestApproval", self._stub.RequestApproval,
                              safety_pb2.RequestApprovalRequest(approval=approval))
        return response.approval

    def _as_operator(self, method: str, stub_method: Callable[..., R], request: Message) -> R:
        metadata = _operator(self._token)
        try:
            return stub_method(request, timeout=self.deadline_s, metadata=metadata)
        except grpc.RpcError as error:
            raise from_rpc_error(error, method, self.target) from None


class MoneyControlClient(_Client):
    def __init__(self, target: str, deadline_s: float = 10.0) -> None:
        super().__init__(target, deadline_s)
        self._stub = money_pb2_grpc.MoneyControlStub(self._channel)

    def pause_all(self, reason: str) -> money_pb2.PauseAllCampaignsResponse:
        return self._call("PauseAllCampaigns", self._stub.PauseAllCampaigns,
                          money_pb2.PauseAllCampaignsRequest(reason=reason))

    def report(self, run_id: str) -> dict[str, Any]:
        answer = self._call("GetMoneyReport", self._stub.GetMoneyReport,
                            money_pb2.MoneyReportRequest(run_id=run_id))
        return dict(json.loads(answer.document_json))
