"""The money gates' approvals: a run enters phase 3 only with an operator's approved request, and
a phase-4 campaign's budget is raised only after an approved budget_increase.

The request goes to the safety policy (RequestApproval, kind enter_phase_3, for the ledger campaign
the phase books on); while it is pending the run's state is awaiting_approval. The safety policy has
no call that reads one approval, so the decision is read from what it changes: once the request has
left the pending list, the campaign's phase_entry_approved flag (GetBudgetStatus) says approved.
A phase-4 run books on a ledger campaign whose entry was approved on the way through phase 3; one
that was not (a run started in phase 4) asks for the same enter_phase_3 approval first.

A budget_increase raises the ledger campaign's phase-4 daily limit by its amount once approved, so
the decision is read the same way: approved if the limit grew by the amount since the request. One
step is asked at a time per run (so no other step of the run can explain the growth); an approval
the ledger's phase-4 ceiling swallows counts as rejected, which is the safe side: the platform is
not told a budget the ledger would not cover.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import grpc

from orchestrator.money.records import ApprovalRecord, MoneyRunDocument
from orchestrator.money.safety import REAL_TESTING, SCALED, SafetyCalls

if TYPE_CHECKING:
    from orchestrator.money.driver import RunHandle

logger = logging.getLogger(__name__)
Save = Callable[[], Awaitable[None]]


class EntryGate:
    def __init__(self, safety: SafetyCalls, poll_s: float) -> None:
        self.safety = safety
        self.poll_s = poll_s

    async def enter(self, money: MoneyRunDocument, run: RunHandle, ledger_campaign: str, save: Save) -> str:
        """"approved", "rejected", or "interrupted" when the run stops while it waits. While the
        safety policy cannot be reached the run waits too, saying so."""
        while not run.stopping():
            try:
                return await self._enter(money, run, ledger_campaign, save)
            except grpc.aio.AioRpcError as error:
                if error.code() not in {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}:
                    raise
                detail = f"safety policy at {self.safety.target} unreachable ({error.code().name}); retrying"
                logger.warning("phase-3 entry waits: %s", detail, extra={"run_id": run.run_id})
                await run.set_state("awaiting_approval", detail)
                await asyncio.sleep(max(self.poll_s, 1.0))
        return "interrupted"

    async def _enter(self, money: MoneyRunDocument, run: RunHandle, ledger_campaign: str, save: Save) -> str:
        kind = "enter_phase_3"
        record = next((a for a in money.approvals
                       if a.kind == kind and a.campaign_id == ledger_campaign), None)
        if record is not None and record.status in {"approved", "rejected"}:
            return record.status
        if record is None and run.phase == SCALED:
            if (await self.safety.budget_status(ledger_campaign, REAL_TESTING)).phase_entry_approved:
                return "approved"
        if record is None:
            asked = await self.safety.request_approval(
                kind, ledger_campaign, run.run_id, REAL_TESTING,
                f"run {run.run_id} graduated to phase 3: its policy will run sandbox campaigns on"
                f" {ledger_campaign}")
            record = ApprovalRecord(approval_id=asked.approval_id, kind=kind, campaign_id=ledger_campaign,
                                    requested_at=time.time())
            money.approvals.append(record)
            await save()
        await run.set_state("awaiting_approval", f"waiting for approval {record.approval_id} ({kind})")
        while not run.stopping():
            pending = {a.approval_id: a for a in await self.safety.pending()}
            if record.approval_id not in pending:
                status = await self.safety.budget_status(ledger_campaign, run.phase)
                record.status = "approved" if status.phase_entry_approved else "rejected"
                record.decided_at = time.time()
                await save()
                return record.status
            await asyncio.sleep(self.poll_s)
        return "interrupted"


class StepGate:
    """Phase 4's budget step-ups: one budget_increase request at a time per run."""

    def __init__(self, safety: SafetyCalls, poll_s: float) -> None:
        self.safety = safety
        self.poll_s = poll_s
        self.one_at_a_time = asyncio.Lock()

    async def ask(self, money: MoneyRunDocument, run: RunHandle, ledger_campaign: str, subject: str,
                  amount: float, justification: str, save: Save) -> str:
        """"approved", "rejected", or "interrupted"; a step asked before (same subject) is not asked
        again, its stored decision stands."""
        kind = "budget_increase"
        async with self.one_at_a_time:
            record = next((a for a in money.approvals if a.kind == kind and a.subject == subject), None)
            if record is not None and record.status in {"approved", "rejected"}:
                return record.status
            if record is None:
                before = (await self.safety.budget_status(ledger_campaign, SCALED)).daily_limit
                asked = await self.safety.request_approval(kind, ledger_campaign, run.run_id, SCALED,
                                                           justification, amount)
                record = ApprovalRecord(approval_id=asked.approval_id, kind=kind, campaign_id=ledger_campaign,
                                        amount=amount, subject=subject, limit_before=before,
                                        requested_at=time.time())
                money.approvals.append(record)
                await save()
            await run.set_state("awaiting_approval", f"waiting for approval {record.approval_id} ({kind})")
            while not run.stopping():
                pending = {a.approval_id for a in await self.safety.pending()}
                if record.approval_id not in pending:
                    limit = (await self.safety.budget_status(ledger_campaign, SCALED)).daily_limit
                    grown = limit - record.limit_before >= record.amount - 1e-6
                    record.status = "approved" if grown else "rejected"
                    record.decided_at = time.time()
                    await save()
                    await run.set_state("running", "")
                    return record.status
                await asyncio.sleep(self.poll_s)
            return "interrupted"
