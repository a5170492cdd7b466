"""The emergency stop, exercised end to end on the ad platform sandbox.

`stop_and_resume`: EmergencyStop at the safety policy (as `gaelp stop` sends it), then
MoneyControl.PauseAllCampaigns at the orchestrator; the latency is the time from the stop to the
answer naming every campaign paused, and the sandbox's own call log must hold a pause for each of
them. The run then waits for an approved resume (state `awaiting_approval`); the operator asks for
`resume_after_stop`, approves it, and the run goes on.

Used by `make demo ARGS=--stop-drill` (`StopDrill`: once, on the first live money-phase campaign,
its latency in report.json's `emergency_stop_latency_s`) and by benchmarks/emergency_stop.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from gaelp.client.errors import ClientError, RunNotFound
from gaelp.client.money import ApprovalsClient, MoneyControlClient
from gaelp.sim.platform.process import SandboxProcess
from gaelp.v1 import orchestrator_pb2, orchestrator_pb2_grpc

T = TypeVar("T")
POLL_S = 0.02
WAIT_S = 120.0  # for the run to change state after the stop and after the resume
# A campaign seen live may end its last window before the stop reaches it: nothing is paused then,
# and the drill (after the resume) waits for the next live campaign, this many times at most.
DRILL_ATTEMPTS = 3


@dataclass(frozen=True)
class StopOutcome:
    latency_s: float
    paused: list[str]  # the platform campaign ids the orchestrator paused


def wait_for(condition: Callable[[], T], timeout_s: float, what: str) -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(POLL_S)
    raise TimeoutError(f"no {what} within {timeout_s} s")


def live_campaigns(report: dict[str, Any]) -> list[str]:
    """Money-phase campaigns active on the platform."""
    return [c["campaign_id"] for c in report.get("campaigns", []) if c["status"] == "active"]


def stop_and_resume(approvals: ApprovalsClient, control: MoneyControlClient, sandbox: SandboxProcess,
                    run_state: Callable[[], str], reason: str) -> StopOutcome:
    calls_before = sandbox.tool("sandbox_call_log")["total"]
    started = time.monotonic()
    approvals.emergency_stop(reason)
    paused = list(control.pause_all(reason).paused_campaign_ids)
    latency = time.monotonic() - started
    calls = sandbox.tool("sandbox_call_log", {"since": calls_before})["calls"]
    pauses = {c["campaign_id"] for c in calls if c["operation"] == "pause"}
    if not set(paused) <= pauses:
        raise AssertionError(f"campaigns reported paused without a pause in the sandbox's log: "
                             f"{sorted(set(paused) - pauses)}")
    wait_for(lambda: run_state() == "awaiting_approval", WAIT_S, "wait for the approved resume")
    resume = approvals.request_resume(f"{reason}: done")
    approvals.decide(resume.approval_id, True, f"{reason}: resume")
    wait_for(lambda: run_state() == "running", WAIT_S, "resume of the run")
    return StopOutcome(latency, paused)


def run_state_of(orchestrator_target: str, run_id: str) -> Callable[[], str]:
    def state() -> str:
        with grpc.insecure_channel(orchestrator_target) as channel:
            status = orchestrator_pb2_grpc.OrchestratorStub(channel).GetRunStatus(
                orchestrator_pb2.RunIdRequest(run_id=run_id), timeout=10)
        return str(status.state)
    return state


class StopDrill:
    """One stop-and-resume as the demo operator, once the run has a live money-phase campaign."""

    def __init__(self, safety_target: str, orchestrator_target: str, token: str, run_id: str,
                 sandbox: SandboxProcess, say: Callable[[str], None], poll_s: float = 0.05) -> None:
        self.safety_target, self.orchestrator_target = safety_target, orchestrator_target
        self.token, self.run_id, self.sandbox = token, run_id, sandbox
        self.say, self.poll_s = say, poll_s
        self.outcome: StopOutcome | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stop-drill", daemon=True)

    def __enter__(self) -> StopDrill:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=WAIT_S)

    def _run(self) -> None:
        attempts = 0
        with ApprovalsClient(self.safety_target, 10.0, self.token) as approvals, \
                MoneyControlClient(self.orchestrator_target) as control:
            while not self._stop.wait(self.poll_s):
                try:
                    if not live_campaigns(control.report(self.run_id)):
                        continue
                except RunNotFound:  # no money phase yet
                    continue
                except ClientError as error:
                    self.say(f"  stop drill: {error}")
                    continue
                self.say("  stop drill: emergency stop as the demo operator while a sandbox campaign is live")
                attempts += 1
                try:
                    outcome = stop_and_resume(approvals, control, self.sandbox,
                                              run_state_of(self.orchestrator_target, self.run_id),
                                              "demo stop drill")
                except (ClientError, AssertionError, TimeoutError) as error:
                    self.say(f"  stop drill failed: {error}")
                    return
                if not outcome.paused and attempts < DRILL_ATTEMPTS:
                    self.say("  stop drill: the campaign had ended its last window before the stop reached"
                             " it, nothing to pause; resumed, waiting for the next live campaign")
                    continue
                self.outcome = outcome
                self.say(f"  stop drill: {len(self.outcome.paused)} campaign(s) paused "
                         f"{self.outcome.latency_s * 1000:.0f} ms after the stop (each pause in the "
                         "sandbox's call log); resumed after an approved resume_after_stop")
                return
