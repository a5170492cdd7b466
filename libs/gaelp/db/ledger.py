"""The spend ledger: reserve before spending, commit what was spent, release the rest.

Every decision that reads usage and writes a reservation runs in one transaction holding the
campaign's lock (SQLite: BEGIN IMMEDIATE behind one writer; PostgreSQL: an advisory lock on
"safety:campaign:<id>"), so concurrent reservations of a campaign are checked one after another and
committed + outstanding can never pass a limit. Limits are per campaign: the day (in the campaign's
time zone, all phases), the episode of a phase and the phase total. The emergency-stop row is read
FOR SHARE on PostgreSQL so that a stop waits for reservations in flight and every later one sees it.
"""

from __future__ import annotations

import math
import sqlite3
import uuid
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import asyncpg

from gaelp.db.database import Database, Executor, Row
from gaelp.db.ledger_outbox import ViolationRecord, record_violation

MICROS_PER_DOLLAR = 1_000_000


def to_micros(dollars: float) -> int:
    if not math.isfinite(dollars):
        raise ValueError(f"amount must be finite, got {dollars}")
    return round(dollars * MICROS_PER_DOLLAR)


def to_dollars(micros: int) -> float:
    return micros / MICROS_PER_DOLLAR


def local_day(at: float, time_zone: str) -> str:
    """The calendar date (YYYY-MM-DD) of the instant `at` in the given IANA zone."""
    return datetime.fromtimestamp(at, ZoneInfo(time_zone)).date().isoformat()


class LedgerError(Exception):
    """A request the ledger cannot apply; the message says why."""


class UnknownCampaign(LedgerError):
    pass


class UnknownReservation(LedgerError):
    pass


class IdempotencyConflict(LedgerError):
    """An idempotency key was reused with different parameters."""


class ReservationClosed(LedgerError):
    """The reservation was released, expired or committed with another amount."""


class CommitExceedsReservation(LedgerError):
    pass


class CampaignConflict(LedgerError):
    """A campaign id is already registered with other settings."""


@dataclass(frozen=True)
class SpendLimits:
    """The limits of one phase in micro-dollars; daily limits come from the campaign."""

    episode_micros: int
    phase_total_micros: int
    max_bid_micros: int
    daily_ceiling_micros: int
    requires_entry_approval: bool
    budget_steps_apply: bool  # phase 4: approved steps raise the campaign's daily limit


@dataclass(frozen=True)
class Campaign:
    campaign_id: str
    time_zone: str
    daily_limit_micros: int
    phase_entry_approved: bool


@dataclass(frozen=True)
class ReserveRequest:
    campaign_id: str
    phase: int
    amount_micros: int
    idempotency_key: str
    episode_id: str
    run_id: str
    bid_micros: int


@dataclass(frozen=True)
class Reservation:
    reservation_id: str
    idempotency_key: str
    campaign_id: str
    phase: int
    episode_id: str
    run_id: str
    day: str
    amount_micros: int
    bid_micros: int
    state: str
    committed_micros: int
    commit_key: str
    created_at: float
    expires_at: float


@dataclass(frozen=True)
class ReserveOutcome:
    granted: bool
    reservation: Reservation | None
    refused_by: str
    reason: str
    remaining_micros: int


@dataclass(frozen=True)
class CommitOutcome:
    reservation_id: str
    committed_micros: int
    released_micros: int


@dataclass(frozen=True)
class BudgetUsage:
    campaign: Campaign
    day: str
    daily_limit_micros: int
    committed_day_micros: int
    reserved_day_micros: int
    committed_phase_micros: int
    reserved_phase_micros: int
    emergency_stopped: bool


def _reservation(row: Row) -> Reservation:
    return Reservation(**{key: row[key] for key in Reservation.__dataclass_fields__})


def _campaign(row: Row) -> Campaign:
    return Campaign(
        campaign_id=row["campaign_id"],
        time_zone=row["time_zone"],
        daily_limit_micros=row["daily_limit_micros"],
        phase_entry_approved=bool(row["phase_entry_approved"]),
    )


_RESERVATION_COLUMNS = ", ".join(Reservation.__dataclass_fields__)


class SpendLedger:
    def __init__(self, db: Database, reservation_ttl_s: float) -> None:
        self.db = db
        self.reservation_ttl_s = reservation_ttl_s

    @staticmethod
    def lock_key(campaign_id: str) -> str:
        return f"safety:campaign:{campaign_id}"

    async def register_campaign(
        self, campaign_id: str, time_zone: str, daily_limit_micros: int, now: float
    ) -> tuple[Campaign, bool]:
        """Create the campaign; registering the same settings again is a no-op (created=False)."""
        async with self.db.transaction(lock_key=self.lock_key(campaign_id)) as tx:
            existing = await tx.fetchrow(
                "SELECT * FROM safety_campaigns WHERE campaign_id = $1", campaign_id
            )
            if existing is not None:
                campaign = _campaign(existing)
                if (campaign.time_zone, campaign.daily_limit_micros) != (time_zone, daily_limit_micros):
                    raise CampaignConflict(
                        f"campaign {campaign_id!r} is already registered with time zone"
                        f" {campaign.time_zone} and daily limit {to_dollars(campaign.daily_limit_micros)}"
                    )
                return campaign, False
            await tx.execute(
                "INSERT INTO safety_campaigns (campaign_id, time_zone, daily_limit_micros, created_at)"
                " VALUES ($1, $2, $3, $4)",
                campaign_id,
                time_zone,
                daily_limit_micros,
                now,
            )
        return Campaign(campaign_id, time_zone, daily_limit_micros, False), True

    async def campaign(self, campaign_id: str) -> Campaign | None:
        row = await self.db.fetchrow("SELECT * FROM safety_campaigns WHERE campaign_id = $1", campaign_id)
        return _campaign(row) if row is not None else None

    async def reservation(self, reservation_id: str) -> Reservation | None:
        row = await self.db.fetchrow(
            f"SELECT {_RESERVATION_COLUMNS} FROM safety_reservations WHERE reservation_id = $1",
            reservation_id,
        )
        return _reservation(row) if row is not None else None

    async def reserve(self, request: ReserveRequest, limits: SpendLimits, now: float) -> ReserveOutcome:
        """Grant the reservation if no limit would be passed; a refusal is queued as a violation."""
        try:
            async with self.db.transaction(lock_key=self.lock_key(request.campaign_id)) as tx:
                return await self._reserve(tx, request, limits, now)
        except (sqlite3.IntegrityError, asyncpg.UniqueViolationError) as error:
            # Only a concurrent reuse of the key for another campaign gets here (same-campaign
            # retries are serialized by the lock and answered from the stored reservation).
            raise IdempotencyConflict(
                f"idempotency key {request.idempotency_key!r} is already used by another reservation"
            ) from error

    async def _reserve(
        self, tx: Executor, request: ReserveRequest, limits: SpendLimits, now: float
    ) -> ReserveOutcome:
        existing = await tx.fetchrow(
            f"SELECT {_RESERVATION_COLUMNS} FROM safety_reservations WHERE idempotency_key = $1",
            request.idempotency_key,
        )
        if existing is not None:
            return _replayed(_reservation(existing), request)
        campaign_row = await tx.fetchrow(
            "SELECT * FROM safety_campaigns WHERE campaign_id = $1", request.campaign_id
        )
        if campaign_row is None:
            raise UnknownCampaign(f"campaign {request.campaign_id!r} is not registered")
        campaign = _campaign(campaign_row)
        await tx.execute(
            "UPDATE safety_reservations SET state = 'expired', closed_at = $2"
            " WHERE campaign_id = $1 AND state = 'reserved' AND expires_at <= $2",
            request.campaign_id,
            now,
        )
        day = local_day(now, campaign.time_zone)
        daily_limit = await _daily_limit(tx, campaign, limits)
        usage = await tx.fetchrow(
            "SELECT"
            " COALESCE(SUM(CASE WHEN day = $2 THEN spend END), 0) AS day_used,"
            " COALESCE(SUM(CASE WHEN phase = $3 THEN spend END), 0) AS phase_used,"
            " COALESCE(SUM(CASE WHEN phase = $3 AND episode_id = $4 THEN spend END), 0) AS episode_used"
            " FROM (SELECT day, phase, episode_id,"
            "   CASE WHEN state = 'committed' THEN committed_micros ELSE amount_micros END AS spend"
            "   FROM safety_reservations WHERE campaign_id = $1 AND state IN ('reserved', 'committed')"
            " ) AS active",
            request.campaign_id,
            day,
            request.phase,
            request.episode_id,
        )
        assert usage is not None
        headroom = {
            "episode_limit": limits.episode_micros - int(usage["episode_used"]),
            "daily_limit": daily_limit - int(usage["day_used"]),
            "phase_total": limits.phase_total_micros - int(usage["phase_used"]),
        }
        refusal = await self._refusal(tx, campaign, request, limits, headroom)
        if refusal is not None:
            refused_by, reason, severity = refusal
            await record_violation(
                tx,
                ViolationRecord(
                    campaign_id=request.campaign_id,
                    run_id=request.run_id,
                    rule=refused_by,
                    severity=severity,
                    amount_micros=request.amount_micros,
                    phase=request.phase,
                    action_taken="refused",
                    detail=reason,
                    occurred_at=now,
                ),
            )
            return ReserveOutcome(False, None, refused_by, reason, max(min(headroom.values()), 0))
        reservation = Reservation(
            reservation_id=uuid.uuid4().hex,
            idempotency_key=request.idempotency_key,
            campaign_id=request.campaign_id,
            phase=request.phase,
            episode_id=request.episode_id,
            run_id=request.run_id,
            day=day,
            amount_micros=request.amount_micros,
            bid_micros=request.bid_micros,
            state="reserved",
            committed_micros=0,
            commit_key="",
            created_at=now,
            expires_at=now + self.reservation_ttl_s,
        )
        await tx.execute(
            f"INSERT INTO safety_reservations ({_RESERVATION_COLUMNS})"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            *(getattr(reservation, name) for name in Reservation.__dataclass_fields__),
        )
        remaining = min(headroom.values()) - request.amount_micros
        return ReserveOutcome(True, reservation, "", "", remaining)

    async def _refusal(
        self,
        tx: Executor,
        campaign: Campaign,
        request: ReserveRequest,
        limits: SpendLimits,
        headroom: dict[str, int],
    ) -> tuple[str, str, str] | None:
        """(limit name, reason, severity) of the first rule the request breaks, or None."""
        stop_sql = "SELECT stopped, reason FROM safety_emergency_stop WHERE id = 1"
        if self.db.dialect == "postgresql":
            stop_sql += " FOR SHARE"
        stop = await tx.fetchrow(stop_sql)
        if stop is not None and stop["stopped"]:
            return "emergency_stop", f"emergency stop in force: {stop['reason']}", "critical"
        if limits.requires_entry_approval and not campaign.phase_entry_approved:
            return (
                "phase_entry_approval",
                f"campaign {campaign.campaign_id!r} has no approved enter_phase_3 request",
                "critical",
            )
        if request.bid_micros > limits.max_bid_micros:
            return (
                "max_bid",
                f"bid {to_dollars(request.bid_micros)} exceeds the maximum bid"
                f" {to_dollars(limits.max_bid_micros)}",
                "warning",
            )
        for limit_name, left in headroom.items():
            if request.amount_micros > left:
                return (
                    limit_name,
                    f"reserving {to_dollars(request.amount_micros)} would pass the {limit_name};"
                    f" {to_dollars(max(left, 0))} left",
                    "warning",
                )
        return None

    async def commit(
        self, reservation_id: str, actual_micros: int, commit_key: str, now: float
    ) -> CommitOutcome:
        """Record what was spent (at most the reserved amount); the rest is released."""
        found = await self.reservation(reservation_id)
        if found is None:
            raise UnknownReservation(f"reservation {reservation_id!r} does not exist")
        async with self.db.transaction(lock_key=self.lock_key(found.campaign_id)) as tx:
            row = await tx.fetchrow(
                f"SELECT {_RESERVATION_COLUMNS} FROM safety_reservations WHERE reservation_id = $1",
                reservation_id,
            )
            assert row is not None
            current = _reservation(row)
            if current.state == "committed":
                if current.committed_micros == actual_micros and commit_key in ("", current.commit_key):
                    return _commit_outcome(current)
                raise ReservationClosed(
                    f"reservation {reservation_id} was already committed with"
                    f" {to_dollars(current.committed_micros)}"
                )
            if current.state == "reserved" and current.expires_at <= now:
                await tx.execute(
                    "UPDATE safety_reservations SET state = 'expired', closed_at = $2"
                    " WHERE reservation_id = $1",
                    reservation_id,
                    now,
                )
                raise ReservationClosed(f"reservation {reservation_id} expired before the commit")
            if current.state != "reserved":
                raise ReservationClosed(f"reservation {reservation_id} is {current.state}")
            if actual_micros > current.amount_micros:
                raise CommitExceedsReservation(
                    f"actual amount {to_dollars(actual_micros)} exceeds the reserved"
                    f" {to_dollars(current.amount_micros)}"
                )
            await tx.execute(
                "UPDATE safety_reservations SET state = 'committed', committed_micros = $2,"
                " commit_key = $3, closed_at = $4 WHERE reservation_id = $1",
                reservation_id,
                actual_micros,
                commit_key,
                now,
            )
        return CommitOutcome(reservation_id, actual_micros, current.amount_micros - actual_micros)

    async def release(self, reservation_id: str, now: float) -> int:
        """Release an open reservation; return what it freed (0 when it was already closed)."""
        found = await self.reservation(reservation_id)
        if found is None:
            raise UnknownReservation(f"reservation {reservation_id!r} does not exist")
        async with self.db.transaction(lock_key=self.lock_key(found.campaign_id)) as tx:
            state = await tx.fetchval(
                "SELECT state FROM safety_reservations WHERE reservation_id = $1", reservation_id
            )
            if state == "committed":
                raise ReservationClosed(f"reservation {reservation_id} is already committed")
            if state != "reserved":
                return 0
            await tx.execute(
                "UPDATE safety_reservations SET state = 'released', closed_at = $2"
                " WHERE reservation_id = $1",
                reservation_id,
                now,
            )
        return found.amount_micros

    async def expire_due(self, now: float) -> int:
        """Release every reservation past its expiry (the background sweeper calls this)."""
        async with self.db.transaction() as tx:
            return await tx.execute(
                "UPDATE safety_reservations SET state = 'expired', closed_at = $1"
                " WHERE state = 'reserved' AND expires_at <= $1",
                now,
            )

    async def usage(
        self, campaign_id: str, phase: int, day: str, limits: SpendLimits, now: float
    ) -> BudgetUsage:
        campaign = await self.campaign(campaign_id)
        if campaign is None:
            raise UnknownCampaign(f"campaign {campaign_id!r} is not registered")
        async with self.db.transaction() as tx:
            daily_limit = await _daily_limit(tx, campaign, limits)
            row = await tx.fetchrow(
                "SELECT"
                " COALESCE(SUM(CASE WHEN day = $2 AND state = 'committed' THEN committed_micros END), 0)"
                "   AS committed_day,"
                " COALESCE(SUM(CASE WHEN day = $2 AND state = 'reserved' THEN amount_micros END), 0)"
                "   AS reserved_day,"
                " COALESCE(SUM(CASE WHEN phase = $3 AND state = 'committed' THEN committed_micros END), 0)"
                "   AS committed_phase,"
                " COALESCE(SUM(CASE WHEN phase = $3 AND state = 'reserved' THEN amount_micros END), 0)"
                "   AS reserved_phase"
                " FROM safety_reservations WHERE campaign_id = $1"
                " AND (state = 'committed' OR (state = 'reserved' AND expires_at > $4))",
                campaign_id,
                day,
                phase,
                now,
            )
            stopped = await tx.fetchval("SELECT stopped FROM safety_emergency_stop WHERE id = 1")
        assert row is not None
        return BudgetUsage(
            campaign=campaign,
            day=day,
            daily_limit_micros=daily_limit,
            committed_day_micros=int(row["committed_day"]),
            reserved_day_micros=int(row["reserved_day"]),
            committed_phase_micros=int(row["committed_phase"]),
            reserved_phase_micros=int(row["reserved_phase"]),
            emergency_stopped=bool(stopped),
        )


async def _daily_limit(tx: Executor, campaign: Campaign, limits: SpendLimits) -> int:
    """The campaign's base daily limit, plus its approved steps in phase 4, up to the ceiling."""
    limit = campaign.daily_limit_micros
    if limits.budget_steps_apply:
        steps = await tx.fetchval(
            "SELECT COALESCE(SUM(amount_micros), 0) FROM safety_budget_steps WHERE campaign_id = $1",
            campaign.campaign_id,
        )
        limit += int(steps)
    return min(limit, limits.daily_ceiling_micros)


def _replayed(existing: Reservation, request: ReserveRequest) -> ReserveOutcome:
    same = (
        existing.campaign_id == request.campaign_id
        and existing.phase == request.phase
        and existing.amount_micros == request.amount_micros
        and existing.episode_id == request.episode_id
    )
    if not same:
        raise IdempotencyConflict(
            f"idempotency key {request.idempotency_key!r} was used for a different reservation"
        )
    return ReserveOutcome(True, existing, "", "", 0)


def _commit_outcome(reservation: Reservation) -> CommitOutcome:
    return CommitOutcome(
        reservation.reservation_id,
        reservation.committed_micros,
        reservation.amount_micros - reservation.committed_micros,
    )
