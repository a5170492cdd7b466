"""Blocking clients of the orchestrator and safety-policy gRPC APIs, for scripts and the CLI.

Every call carries a deadline; every failure is raised as a gaelp.client.errors.ClientError.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from gaelp.client.errors import ClientError, DeadlineExceeded, RunFailed, from_rpc_error
from gaelp.v1 import common_pb2, orchestrator_pb2, orchestrator_pb2_grpc, safety_pb2, safety_pb2_grpc

R = TypeVar("R", bound=Message)
# StartRun evaluates the reference policies on the first task before it answers.
START_DEADLINE_MIN_S = 120.0
FINISHED_STATES = frozenset({"completed", "failed"})


class _Client:
    def __init__(self, target: str, deadline_s: float) -> None:
        if deadline_s <= 0:
            raise ValueError("deadline_s must be positive")
        self.target = target
        self.deadline_s = deadline_s
        self._channel = grpc.insecure_channel(target)

    def _call(self, method: str, stub_method: Callable[..., R], request: Message,
              deadline_s: float | None = None) -> R:
        try:
            return stub_method(request, timeout=deadline_s or self.deadline_s)
        except grpc.RpcError as error:
            raise from_rpc_error(error, method, self.target) from None

    def close(self) -> None:
        self._channel.close()

    def __enter__(self: Any) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class OrchestratorClient(_Client):
    """Start, watch, pause and resume runs."""

    def __init__(self, target: str, deadline_s: float = 10.0) -> None:
        super().__init__(target, deadline_s)
        self._stub = orchestrator_pb2_grpc.OrchestratorStub(self._channel)

    def start_run(self, run_id: str = "", *, kind: str = "train", max_env_steps: int = 0,
                  episodes: int | None = None) -> orchestrator_pb2.RunStatus:
        """Start a run; an empty run_id lets the orchestrator pick one. episodes: smoke runs only."""
        config: dict[str, Any] = {"kind": kind, "max_env_steps": max_env_steps}
        if episodes is not None:
            config["episodes"] = episodes
        request = orchestrator_pb2.StartRunRequest(run_id=run_id, config_json=json.dumps(config))
        return self._call("StartRun", self._stub.StartRun, request,
                          max(self.deadline_s, START_DEADLINE_MIN_S))

    def status(self, run_id: str) -> orchestrator_pb2.RunStatus:
        """The run's figures, current phase and phase_history (every transition, oldest first)."""
        request = orchestrator_pb2.RunIdRequest(run_id=run_id)
        return self._call("GetRunStatus", self._stub.GetRunStatus, request)

    def pause(self, run_id: str) -> orchestrator_pb2.RunStatus:
        return self._call("PauseRun", self._stub.PauseRun, orchestrator_pb2.RunIdRequest(run_id=run_id))

    def resume(self, run_id: str) -> orchestrator_pb2.RunStatus:
        return self._call("ResumeRun", self._stub.ResumeRun, orchestrator_pb2.RunIdRequest(run_id=run_id))

    def list_runs(self, state: str = "", limit: int = 0) -> list[orchestrator_pb2.RunStatus]:
        request = orchestrator_pb2.ListRunsRequest(state=state, limit=limit)
        return list(self._call("ListRuns", self._stub.ListRuns, request).runs)

    def wait(self, run_id: str, timeout_s: float, poll_s: float = 1.0) -> orchestrator_pb2.RunStatus:
        """Poll until the run completes (returned) or fails (RunFailed); DeadlineExceeded after timeout_s."""
        give_up = time.monotonic() + timeout_s
        while True:
            status = self.status(run_id)
            if status.state == "failed":
                raise RunFailed(f"run {run_id} failed: {status.detail or 'no detail'}")
            if status.state in FINISHED_STATES:
                return status
            if time.monotonic() >= give_up:
                raise DeadlineExceeded(f"run {run_id} still {status.state} after {timeout_s:g}s")
            time.sleep(poll_s)


class SafetyPolicyClient(_Client):
    """Budget status of a campaign (the ledger's view: limits, committed and reserved spend)."""

    def __init__(self, target: str, deadline_s: float = 10.0) -> None:
        super().__init__(target, deadline_s)
        self._stub = safety_pb2_grpc.SafetyPolicyStub(self._channel)

    def budget_status(self, campaign_id: str, phase: int = common_pb2.PHASE_REAL_TESTING,
                      day: str = "") -> safety_pb2.BudgetStatus:
        request = safety_pb2.GetBudgetStatusRequest(campaign_id=campaign_id, phase=phase, day=day)  # type: ignore[arg-type]
        return self._call("GetBudgetStatus", self._stub.GetBudgetStatus, request)


__all__ = ["ClientError", "OrchestratorClient", "SafetyPolicyClient"]
