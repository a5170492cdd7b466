"""Human approvals, the emergency stop and the audit log of the safety-policy ledger.

A decision and its effect (phase entry granted, a daily-limit step added, the stop lifted) and its
audit row are written in one transaction, so the audit log never misses a decision that took effect.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from gaelp.db.database import Database, Executor, Row
from gaelp.db.ledger import SpendLedger
from gaelp.db.ledger_outbox import ViolationRecord, record_violation

ApprovalKind = Literal["enter_phase_3", "budget_increase", "resume_after_stop"]
APPROVAL_KINDS: tuple[str, ...] = ("enter_phase_3", "budget_increase", "resume_after_stop")
_STOP_LOCK = "safety:emergency_stop"


class ApprovalError(Exception):
    """An approval that cannot be created or decided; the message says why."""


class UnknownApproval(ApprovalError):
    pass


class AlreadyDecided(ApprovalError):
    pass


@dataclass(frozen=True)
class Approval:
    approval_id: str
    kind: str
    campaign_id: str
    run_id: str
    phase: int
    amount_micros: int
    justification: str
    status: str
    decided_by: str
    comment: str
    requested_at: float
    decided_at: float | None


@dataclass(frozen=True)
class AuditEntry:
    audit_id: int
    at: float
    actor: str
    action: str
    subject: str
    detail: str


@dataclass(frozen=True)
class StopState:
    stopped: bool
    reason: str
    changed_at: float
    changed_by: str


def _approval(row: Row) -> Approval:
    return Approval(**{key: row[key] for key in Approval.__dataclass_fields__})


_APPROVAL_COLUMNS = ", ".join(Approval.__dataclass_fields__)


async def _audit(tx: Executor, at: float, actor: str, action: str, subject: str, detail: str) -> None:
    await tx.execute(
        "INSERT INTO safety_audit (at, actor, action, subject, detail) VALUES ($1, $2, $3, $4, $5)",
        at,
        actor,
        action,
        subject,
        detail,
    )


class ApprovalStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def request(
        self,
        kind: str,
        campaign_id: str,
        run_id: str,
        phase: int,
        amount_micros: int,
        justification: str,
        now: float,
    ) -> Approval:
        if kind not in APPROVAL_KINDS:
            raise ApprovalError(f"unknown approval kind {kind!r}; expected one of {APPROVAL_KINDS}")
        approval = Approval(
            approval_id=uuid.uuid4().hex,
            kind=kind,
            campaign_id=campaign_id,
            run_id=run_id,
            phase=phase,
            amount_micros=amount_micros,
            justification=justification,
            status="pending",
            decided_by="",
            comment="",
            requested_at=now,
            decided_at=None,
        )
        async with self.db.transaction(lock_key=f"safety:approval:{approval.approval_id}") as tx:
            await tx.execute(
                f"INSERT INTO safety_approvals ({_APPROVAL_COLUMNS})"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                *(getattr(approval, name) for name in Approval.__dataclass_fields__),
            )
            await _audit(tx, now, run_id or "unknown", "request", approval.approval_id,
                         f"{kind} campaign={campaign_id} amount_micros={amount_micros}")
        return approval

    async def pending(self) -> list[Approval]:
        rows = await self.db.fetch(
            f"SELECT {_APPROVAL_COLUMNS} FROM safety_approvals WHERE status = 'pending'"
            " ORDER BY requested_at"
        )
        return [_approval(row) for row in rows]

    async def get(self, approval_id: str) -> Approval | None:
        row = await self.db.fetchrow(
            f"SELECT {_APPROVAL_COLUMNS} FROM safety_approvals WHERE approval_id = $1", approval_id
        )
        return _approval(row) if row is not None else None

    async def decide(
        self, approval_id: str, approve: bool, operator: str, comment: str, now: float
    ) -> Approval:
        """Approve or reject a pending request and apply its effect, audited with who and when."""
        found = await self.get(approval_id)
        if found is None:
            raise UnknownApproval(f"approval {approval_id!r} does not exist")
        # Effects touch the campaign's ledger or the stop row: hold the lock their readers hold.
        lock = _STOP_LOCK if found.kind == "resume_after_stop" else SpendLedger.lock_key(found.campaign_id)
        status = "approved" if approve else "rejected"
        async with self.db.transaction(lock_key=lock) as tx:
            changed = await tx.execute(
                "UPDATE safety_approvals SET status = $2, decided_by = $3, comment = $4, decided_at = $5"
                " WHERE approval_id = $1 AND status = 'pending'",
                approval_id,
                status,
                operator,
                comment,
                now,
            )
            if changed != 1:
                raise AlreadyDecided(f"approval {approval_id} was already decided")
            if approve:
                await _apply(tx, found, operator, now)
            await _audit(tx, now, operator, f"decide:{status}", approval_id,
                         f"{found.kind} campaign={found.campaign_id} comment={comment}")
        decided = await self.get(approval_id)
        assert decided is not None
        return decided

    async def emergency_stop(self, operator: str, reason: str, now: float) -> StopState:
        """From now on every reservation is refused, until a resume_after_stop is approved."""
        async with self.db.transaction(lock_key=_STOP_LOCK) as tx:
            await tx.execute(
                "UPDATE safety_emergency_stop SET stopped = 1, reason = $1, changed_at = $2,"
                " changed_by = $3 WHERE id = 1",
                reason,
                now,
                operator,
            )
            await _audit(tx, now, operator, "emergency_stop", "all", reason)
            await record_violation(
                tx,
                ViolationRecord(
                    campaign_id="",
                    run_id="",
                    rule="emergency_stop",
                    severity="critical",
                    amount_micros=0,
                    phase=0,
                    action_taken="stopped",
                    detail=f"emergency stop by {operator}: {reason}",
                    occurred_at=now,
                ),
            )
        return StopState(True, reason, now, operator)

    async def stop_state(self) -> StopState:
        row = await self.db.fetchrow(
            "SELECT stopped, reason, changed_at, changed_by FROM safety_emergency_stop WHERE id = 1"
        )
        assert row is not None, "the ledger migrations insert the emergency-stop row"
        return StopState(bool(row["stopped"]), row["reason"], row["changed_at"], row["changed_by"])

    async def audit_log(self, subject: str | None = None) -> list[AuditEntry]:
        if subject is None:
            rows = await self.db.fetch("SELECT * FROM safety_audit ORDER BY audit_id")
        else:
            rows = await self.db.fetch(
                "SELECT * FROM safety_audit WHERE subject = $1 ORDER BY audit_id", subject
            )
        return [AuditEntry(**row) for row in rows]


async def _apply(tx: Executor, approval: Approval, operator: str, now: float) -> None:
    if approval.kind == "enter_phase_3":
        await tx.execute(
            "UPDATE safety_campaigns SET phase_entry_approved = 1 WHERE campaign_id = $1",
            approval.campaign_id,
        )
    elif approval.kind == "budget_increase":
        await tx.execute(
            "INSERT INTO safety_budget_steps (approval_id, campaign_id, amount_micros, approved_at)"
            " VALUES ($1, $2, $3, $4)",
            approval.approval_id,
            approval.campaign_id,
            approval.amount_micros,
            now,
        )
    elif approval.kind == "resume_after_stop":
        await tx.execute(
            "UPDATE safety_emergency_stop SET stopped = 0, reason = '', changed_at = $1,"
            " changed_by = $2 WHERE id = 1",
            now,
            operator,
        )
