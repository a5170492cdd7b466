"""The violation outbox: refusals and rule breaches are written in the same transaction as the
decision that caused them, and a publisher sends them to Kafka afterwards, so a violation is never
lost to a broker outage or a crash between the decision and the send."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from gaelp.db.database import Database, Executor

Severity = Literal["info", "warning", "critical"]


@dataclass(frozen=True)
class ViolationRecord:
    campaign_id: str
    run_id: str
    rule: str
    severity: Severity
    amount_micros: int
    phase: int
    action_taken: str
    detail: str
    occurred_at: float
    violation_id: str = ""


async def record_violation(tx: Executor, violation: ViolationRecord) -> str:
    """Queue one violation inside the caller's transaction; return its id.

    A violation_id derived from its cause (e.g. the idempotency key of a refused request) makes the
    write idempotent: a retry of the same decision finds the row there and adds none."""
    violation_id = violation.violation_id or uuid.uuid4().hex
    await tx.execute(
        "INSERT INTO safety_violation_outbox (violation_id, campaign_id, run_id, rule, severity,"
        " amount_micros, phase, action_taken, detail, occurred_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (violation_id) DO NOTHING",
        violation_id,
        violation.campaign_id,
        violation.run_id,
        violation.rule,
        violation.severity,
        violation.amount_micros,
        violation.phase,
        violation.action_taken,
        violation.detail,
        violation.occurred_at,
    )
    return violation_id


async def unpublished_violations(db: Database, limit: int = 200) -> list[ViolationRecord]:
    rows = await db.fetch(
        "SELECT violation_id, campaign_id, run_id, rule, severity, amount_micros, phase,"
        " action_taken, detail, occurred_at FROM safety_violation_outbox"
        " WHERE published = 0 ORDER BY occurred_at LIMIT $1",
        limit,
    )
    return [ViolationRecord(**row) for row in rows]


async def mark_published(db: Database, violation_ids: list[str]) -> None:
    async with db.transaction(lock_key="safety:outbox") as tx:
        for violation_id in violation_ids:
            await tx.execute(
                "UPDATE safety_violation_outbox SET published = 1 WHERE violation_id = $1", violation_id
            )
