"""The spend ledger: reserve before spending, commit what was spent, release the rest.

Every decision that reads usage and writes a reservation runs in one transaction holding the
campaign's lock (SQLite: BEGIN IMMEDIATE behind one writer; PostgreSQL: an advisory lock on
"safety:campaign:<id>"), so concurrent reservations of a campaign are checked one after another and
committed + outstanding can never pass a limit. Limits are per campaign: the day (in the campaign's
time zone, all phases), the episode of a phase and the phase total. The emergency-stop row is read
FOR SHARE on PostgreSQL so that a stop waits for reservations in flight and every later one sees it.

On PostgreSQL the reserve decision is the function safety_reserve_batch (ledger_schema.py), with
the locks held only inside the server, and usage comes from running totals per limit scope.
Requests that arrive while a batch is with the database go together in the next one (group
commit): one statement (safety_ledger_batch: one round trip, one transaction, one WAL flush) for the
lot, its commits first, then its reservations in arrival order within each campaign, each against
the committed + reserved totals as the earlier ones of the batch left them. A request is answered
only once its batch is committed, so every acknowledged reservation and commit is durable. On
SQLite the same rules run here in Python, one request per transaction. docs/ledger.md tells the
whole design.

Every answer is idempotent across restarts: a reservation and a refusal are stored under the
request's idempotency key and a retry gets the stored answer; violations carry ids derived from what
caused them, so a retry never writes one twice. Spend the platform reports is always recorded: a
commit for a reservation that expired or was released is recorded too, and raises a violation for
every limit it makes the campaign pass. The commits of open reservations in a batch are one
conditional UPDATE, under the campaigns' locks (they change the running totals).
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Generic, TypeVar
from zoneinfo import ZoneInfo

import asyncpg

from gaelp.db.database import Database, Executor, Row
from gaelp.db.ledger_outbox import Severity, ViolationRecord, record_violation

MICROS_PER_DOLLAR = 1_000_000


def to_micros(dollars: float) -> int:
    if not math.isfinite(dollars):
        raise ValueError("amount must be finite")
    return round(dollars * MICROS_PER_DOLLAR)


def to_dollars(micros: int) -> float:
    return micros / MICROS_PER_DOLLAR


def format_dollars(micros: int) -> str:
    """Dollars without trailing zeros (1.5, 2, 0.000001), as safety_dollars prints them in SQL."""
    return format(Decimal(micros).scaleb(-6).normalize(), "f")


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
    """The reservation was committed with another amount, or is committed and cannot be released."""


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


LimitsOfPhase = Callable[[int], SpendLimits]


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


@dataclass(frozen=True)
class _Refusal:
    refused_by: str
    reason: str
    severity: Severity


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
_USAGE_SQL = (
    "SELECT"
    " COALESCE(SUM(CASE WHEN day = $2 THEN spend END), 0) AS day_used,"
    " COALESCE(SUM(CASE WHEN phase = $3 THEN spend END), 0) AS phase_used,"
    " COALESCE(SUM(CASE WHEN phase = $3 AND episode_id = $4 THEN spend END), 0) AS episode_used"
    " FROM (SELECT day, phase, episode_id,"
    "   CASE WHEN state = 'committed' THEN committed_micros ELSE amount_micros END AS spend"
    "   FROM safety_reservations WHERE campaign_id = $1 AND state IN ('reserved', 'committed')"
    " ) AS active"
)
_TOTALS_SQL = (
    "SELECT"
    " COALESCE(SUM(spend_micros) FILTER (WHERE scope = $2), 0) AS day_used,"
    " COALESCE(SUM(spend_micros) FILTER (WHERE scope = $3), 0) AS phase_used,"
    " COALESCE(SUM(spend_micros) FILTER (WHERE scope = $4), 0) AS episode_used"
    " FROM safety_spend_totals WHERE campaign_id = $1 AND scope IN ($2, $3, $4)"
)
_RESERVE_BATCH_SQL = (
    "SELECT item, outcome, refused_by, reason, remaining FROM safety_reserve_batch("
    "$1::text[], $2::text[], $3::integer[], $4::bigint[], $5::text[], $6::text[], $7::text[],"
    " $8::bigint[], $9::text[], $10::float8[], $11::float8[], $12::bigint[], $13::bigint[],"
    " $14::bigint[], $15::bigint[], $16::boolean[], $17::boolean[])"
)
_LEDGER_BATCH_SQL = (
    "SELECT kind, item, reservation_id, amount_micros, outcome, refused_by, reason, remaining"
    " FROM safety_ledger_batch($1::text[], $2::bigint[], $3::text[], $4::float8[],"
    " $5::text[], $6::text[], $7::integer[], $8::bigint[], $9::text[], $10::text[], $11::text[],"
    " $12::bigint[], $13::text[], $14::float8[], $15::float8[], $16::bigint[], $17::bigint[],"
    " $18::bigint[], $19::bigint[], $20::boolean[], $21::boolean[])"
)
_COMMIT_BATCH_SQL = (
    "SELECT reservation_id, amount_micros FROM safety_commit_batch("
    "$1::text[], $2::bigint[], $3::text[], $4::float8[])"
)
_COMMIT_SQL = (
    "UPDATE safety_reservations SET state = 'committed', committed_micros = $2,"
    " commit_key = $3, closed_at = $4"
    " WHERE reservation_id = $1 AND state = 'reserved' AND expires_at > $4"
    " AND amount_micros >= $2 RETURNING amount_micros"
)

# A batch goes to the database as soon as the one before it is done; what arrives meanwhile waits for
# the next one. No timer: a lone request is sent at once, so batching adds no latency when the ledger
# is idle, and batches grow with the load. One batch at a time: batches touch the same campaigns, so
# a second one would only wait for the first one's locks (measured: half the throughput with four).
_BATCHES_IN_FLIGHT = 1
_MAX_BATCH = 256

Item = TypeVar("Item")
Result = TypeVar("Result")


class _GroupCommit(Generic[Item, Result]):
    """Runs requests in batches: run_batch answers a list of items with one result or error each
    (an error is returned, not raised, so that it fails its own request only)."""

    def __init__(self, run_batch: Callable[[list[Item]], Awaitable[Sequence[Result | Exception]]]) -> None:
        self._run_batch = run_batch
        self._waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, item: Item) -> Result:
        answer: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, answer))
        self._dispatch()
        # A caller that gives up (its RPC was cancelled) cancels only its wait: the batch goes on,
        # its request is decided all the same, and a retry with the same key gets the stored answer.
        return await answer

    def _dispatch(self) -> None:
        while self._waiting and self._in_flight < _BATCHES_IN_FLIGHT:
            batch, self._waiting = self._waiting[:_MAX_BATCH], self._waiting[_MAX_BATCH:]
            self._in_flight += 1
            task = asyncio.create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        results: Sequence[Result | Exception]
        try:
            results = await self._run_batch([item for item, _ in batch])
        except Exception as error:  # the database failed the whole batch: every caller hears it
            results = [error] * len(batch)
        finally:
            # The next batch is started before this one's callers wake, so that it is with the
            # database while they build their responses (it starts after this batch committed).
            self._in_flight -= 1
            self._dispatch()
        for (_, answer), result in zip(batch, results, strict=True):
            if answer.done():
                continue
            if isinstance(result, Exception):
                answer.set_exception(result)
            else:
                answer.set_result(result)


@dataclass(frozen=True)
class _ReserveItem:
    reservation: Reservation
    limits: SpendLimits


@dataclass(frozen=True)
class _CommitRequest:
    reservation_id: str
    actual_micros: int
    commit_key: str
    now: float


class SpendLedger:
    def __init__(self, db: Database, reservation_ttl_s: float) -> None:
        self.db = db
        self.reservation_ttl_s = reservation_ttl_s
        # A campaign's time zone never changes once registered (re-registering differently is a
        # conflict), so the zone that decides a reservation's day is looked up once per campaign.
        self._time_zones: dict[str, str] = {}
        self._batches = _GroupCommit[_ReserveItem | _CommitRequest, ReserveOutcome | int | None](
            self._ledger_batch
        )

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

    async def _time_zone(self, campaign_id: str) -> str:
        zone = self._time_zones.get(campaign_id)
        if zone is None:
            zone = await self.db.fetchval(
                "SELECT time_zone FROM safety_campaigns WHERE campaign_id = $1", campaign_id
            )
            if zone is None:
                raise UnknownCampaign(f"campaign {campaign_id!r} is not registered")
            self._time_zones[campaign_id] = zone
        return zone

    async def reserve(self, request: ReserveRequest, limits: SpendLimits, now: float) -> ReserveOutcome:
        """Grant the reservation if no limit would be passed; a refusal is queued as a violation.

        A key already decided gets the stored answer (the same grant, or the same refusal)."""
        day = local_day(now, await self._time_zone(request.campaign_id))
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
        try:
            if self.db.dialect == "postgresql":
                decided = await self._batches.submit(_ReserveItem(reservation, limits))
                assert not isinstance(decided, int)
                outcome = decided
            else:
                async with self.db.transaction(lock_key=self.lock_key(request.campaign_id)) as tx:
                    outcome = await self._reserve_sqlite(tx, reservation, limits)
        except sqlite3.IntegrityError as error:
            # Only a concurrent reuse of the key for another campaign gets here (same-campaign
            # retries are serialized by the lock and answered from the stored decision).
            raise _key_conflict(request.idempotency_key) from error
        return outcome if outcome is not None else await self._replay(request)

    async def _ledger_batch(
        self, batch: list[_ReserveItem | _CommitRequest]
    ) -> list[ReserveOutcome | int | Exception | None]:
        """A batch in one statement: the commits of open reservations first (they only lower
        usage), then the reservations (safety_ledger_batch; a batch of one kind calls
        safety_commit_batch or safety_reserve_batch alone). When the database
        refuses it (e.g. one key reused by another campaign), each part is taken on its own and,
        if need be, request by request, so that only the offending one fails."""
        reserves = [item for item in batch if isinstance(item, _ReserveItem)]
        commits = [item for item in batch if isinstance(item, _CommitRequest)]
        first = _first_commits(commits)
        commit_results: Sequence[int | Exception | None]
        reserve_results: Sequence[ReserveOutcome | Exception | None]
        try:
            if reserves and first:
                committed, reserve_results = await _commit_and_decide(self.db, list(first.values()), reserves)
            else:
                committed = await _commit_open(self.db, list(first.values())) if first else {}
                reserve_results = await _decide(self.db, reserves) if reserves else []
            commit_results = _commit_results(commits, first, committed)
        except asyncpg.PostgresError:
            commit_results = await self._commit_batch(commits)
            reserve_results = [await self._decide_alone(item) for item in reserves]
        reserved, commits_done = iter(reserve_results), iter(commit_results)
        return [next(reserved) if isinstance(item, _ReserveItem) else next(commits_done) for item in batch]

    async def _decide_alone(self, item: _ReserveItem) -> ReserveOutcome | Exception | None:
        try:
            return (await _decide(self.db, [item]))[0]
        except asyncpg.UniqueViolationError:
            # Only a concurrent reuse of the key for another campaign gets here (same-campaign
            # retries are serialized by the lock and answered from the stored decision).
            return _key_conflict(item.reservation.idempotency_key)
        except asyncpg.PostgresError as error:
            return error

    async def _reserve_sqlite(
        self, tx: Executor, reservation: Reservation, limits: SpendLimits
    ) -> ReserveOutcome | None:
        """The rules of safety_reserve; None when the key is already decided."""
        key = reservation.idempotency_key
        decided = await tx.fetchval(
            "SELECT 1 FROM safety_reservations WHERE idempotency_key = $1"
            " UNION ALL SELECT 1 FROM safety_refusals WHERE idempotency_key = $1",
            key,
        )
        if decided is not None:
            return None
        campaign_row = await tx.fetchrow(
            "SELECT * FROM safety_campaigns WHERE campaign_id = $1", reservation.campaign_id
        )
        if campaign_row is None:
            raise UnknownCampaign(f"campaign {reservation.campaign_id!r} is not registered")
        campaign = _campaign(campaign_row)
        now = reservation.created_at
        await tx.execute(
            "UPDATE safety_reservations SET state = 'expired', closed_at = $2"
            " WHERE campaign_id = $1 AND state = 'reserved' AND expires_at <= $2",
            campaign.campaign_id,
            now,
        )
        headroom = await _headroom(tx, campaign, reservation.day, reservation.phase,
                                   reservation.episode_id, limits, postgres=False)
        remaining = min(headroom.values())
        refusal = await _refusal(tx, campaign, reservation, limits, headroom)
        if refusal is not None:
            remaining = max(remaining, 0)
            await tx.execute(
                "INSERT INTO safety_refusals (idempotency_key, campaign_id, phase, episode_id,"
                " amount_micros, refused_by, reason, remaining_micros, refused_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                key,
                reservation.campaign_id,
                reservation.phase,
                reservation.episode_id,
                reservation.amount_micros,
                refusal.refused_by,
                refusal.reason,
                remaining,
                now,
            )
            await record_violation(
                tx,
                ViolationRecord(
                    campaign_id=reservation.campaign_id,
                    run_id=reservation.run_id,
                    rule=refusal.refused_by,
                    severity=refusal.severity,
                    amount_micros=reservation.amount_micros,
                    phase=reservation.phase,
                    action_taken="refused",
                    detail=refusal.reason,
                    occurred_at=now,
                    violation_id=f"refused:{key}",
                ),
            )
            return ReserveOutcome(False, None, refusal.refused_by, refusal.reason, remaining)
        await tx.execute(
            f"INSERT INTO safety_reservations ({_RESERVATION_COLUMNS})"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            *(getattr(reservation, name) for name in Reservation.__dataclass_fields__),
        )
        return ReserveOutcome(True, reservation, "", "", remaining - reservation.amount_micros)

    async def _replay(self, request: ReserveRequest) -> ReserveOutcome:
        """The stored answer for a key decided before (grant or refusal), if the request is the same."""
        row = await self.db.fetchrow(
            f"SELECT {_RESERVATION_COLUMNS} FROM safety_reservations WHERE idempotency_key = $1",
            request.idempotency_key,
        )
        if row is not None:
            existing = _reservation(row)
            _same_request(request, existing.campaign_id, existing.phase, existing.amount_micros,
                          existing.episode_id)
            return ReserveOutcome(True, existing, "", "", 0)
        refused = await self.db.fetchrow(
            "SELECT campaign_id, phase, episode_id, amount_micros, refused_by, reason, remaining_micros"
            " FROM safety_refusals WHERE idempotency_key = $1",
            request.idempotency_key,
        )
        assert refused is not None, "a decided key has a reservation or a refusal"
        _same_request(request, refused["campaign_id"], refused["phase"], refused["amount_micros"],
                      refused["episode_id"])
        return ReserveOutcome(
            False, None, refused["refused_by"], refused["reason"], refused["remaining_micros"]
        )

    async def commit(
        self,
        reservation_id: str,
        actual_micros: int,
        commit_key: str,
        now: float,
        limits_of: LimitsOfPhase,
    ) -> CommitOutcome:
        """Record what was spent (at most the reserved amount); the rest is released.

        Spend on a reservation that expired or was released is recorded all the same (the platform
        spent it), with a violation for each limit the campaign then passes."""
        # Fast path: an open reservation; one conditional UPDATE (on PostgreSQL, batched).
        if self.db.dialect == "postgresql":
            committed = await self._batches.submit(
                _CommitRequest(reservation_id, actual_micros, commit_key, now)
            )
            assert not isinstance(committed, ReserveOutcome)
            amount = committed
        else:
            amount = await self.db.fetchval(_COMMIT_SQL, reservation_id, actual_micros, commit_key, now)
        if amount is not None:
            return CommitOutcome(reservation_id, actual_micros, amount - actual_micros)
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
                    f" {format_dollars(current.committed_micros)}"
                )
            if actual_micros > current.amount_micros:
                raise CommitExceedsReservation(
                    f"actual amount {format_dollars(actual_micros)} exceeds the reserved"
                    f" {format_dollars(current.amount_micros)}"
                )
            was = "expired" if current.state == "reserved" else current.state
            await tx.execute(
                "UPDATE safety_reservations SET state = 'committed', committed_micros = $2,"
                " commit_key = $3, closed_at = $4 WHERE reservation_id = $1",
                reservation_id,
                actual_micros,
                commit_key,
                now,
            )
            if actual_micros > 0:
                await self._late_commit_violations(tx, current, actual_micros, was, now, limits_of)
        return CommitOutcome(reservation_id, actual_micros, current.amount_micros - actual_micros)

    async def _commit_batch(self, batch: list[_CommitRequest]) -> list[int | Exception | None]:
        """The fast path of commits on their own transaction, one by one if the batch is refused."""
        first = _first_commits(batch)
        if not first:
            return []
        try:
            committed = await _commit_open(self.db, list(first.values()))
        except asyncpg.PostgresError:
            committed = {}
            for request in first.values():
                committed.update(await _commit_open(self.db, [request]))
        return _commit_results(batch, first, committed)

    async def _late_commit_violations(
        self,
        tx: Executor,
        reservation: Reservation,
        actual_micros: int,
        was: str,
        now: float,
        limits_of: LimitsOfPhase,
    ) -> None:
        """A violation (id from the reservation and the limit) per limit the recorded spend passes."""
        campaign_row = await tx.fetchrow(
            "SELECT * FROM safety_campaigns WHERE campaign_id = $1", reservation.campaign_id
        )
        assert campaign_row is not None
        limits = limits_of(reservation.phase)
        headroom = await _headroom(tx, _campaign(campaign_row), reservation.day, reservation.phase,
                                   reservation.episode_id, limits,
                                   postgres=self.db.dialect == "postgresql")
        for limit_name, left in headroom.items():
            if left >= 0:
                continue
            await record_violation(
                tx,
                ViolationRecord(
                    campaign_id=reservation.campaign_id,
                    run_id=reservation.run_id,
                    rule=limit_name,
                    severity="critical",
                    amount_micros=actual_micros,
                    phase=reservation.phase,
                    action_taken="recorded_over_limit",
                    detail=(
                        f"spend {format_dollars(actual_micros)} committed on {was} reservation"
                        f" {reservation.reservation_id} passes the {limit_name} by {format_dollars(-left)}"
                    ),
                    occurred_at=now,
                    violation_id=f"over_limit:{reservation.reservation_id}:{limit_name}",
                ),
            )

    async def release(self, reservation_id: str, now: float) -> int:
        """Release an open reservation; return what it freed (0 when it was already closed)."""
        campaign_id = await self.db.fetchval(
            "SELECT campaign_id FROM safety_reservations WHERE reservation_id = $1", reservation_id
        )
        if campaign_id is None:
            raise UnknownReservation(f"reservation {reservation_id!r} does not exist")
        # Under the campaign's lock: on PostgreSQL a release changes the campaign's running totals.
        async with self.db.transaction(lock_key=self.lock_key(campaign_id)) as tx:
            amount = await tx.fetchval(
                "UPDATE safety_reservations SET state = 'released', closed_at = $2"
                " WHERE reservation_id = $1 AND state = 'reserved' RETURNING amount_micros",
                reservation_id,
                now,
            )
            if amount is not None:
                return int(amount)
            state = await tx.fetchval(
                "SELECT state FROM safety_reservations WHERE reservation_id = $1", reservation_id
            )
        if state == "committed":
            raise ReservationClosed(f"reservation {reservation_id} is already committed")
        return 0

    async def expire_due(self, now: float) -> int:
        """Release every reservation past its expiry (the background sweeper calls this)."""
        if self.db.dialect == "postgresql":
            # safety_expire_due takes the locks of the campaigns concerned, in lock order.
            return int(await self.db.fetchval("SELECT safety_expire_due($1)", now))
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


async def _headroom(
    tx: Executor,
    campaign: Campaign,
    day: str,
    phase: int,
    episode_id: str,
    limits: SpendLimits,
    *,
    postgres: bool,
) -> dict[str, int]:
    """What is left under each limit (negative when passed), in the order the rules check them:
    from the running totals on PostgreSQL, from the rows on SQLite."""
    daily_limit = await _daily_limit(tx, campaign, limits)
    if postgres:
        usage = await tx.fetchrow(
            _TOTALS_SQL, campaign.campaign_id, f"day:{day}", f"phase:{phase}", f"episode:{phase}:{episode_id}"
        )
    else:
        usage = await tx.fetchrow(_USAGE_SQL, campaign.campaign_id, day, phase, episode_id)
    assert usage is not None
    return {
        "episode_limit": limits.episode_micros - int(usage["episode_used"]),
        "daily_limit": daily_limit - int(usage["day_used"]),
        "phase_total": limits.phase_total_micros - int(usage["phase_used"]),
    }


async def _refusal(
    tx: Executor,
    campaign: Campaign,
    reservation: Reservation,
    limits: SpendLimits,
    headroom: dict[str, int],
) -> _Refusal | None:
    """The first rule the request breaks, or None (SQLite; safety_reserve on PostgreSQL)."""
    stop = await tx.fetchrow("SELECT stopped, reason FROM safety_emergency_stop WHERE id = 1")
    if stop is not None and stop["stopped"]:
        # Not critical: the stop is the operator's act, not the agent's misbehaviour, and nothing
        # was overspent; a critical violation would demote the run (migration 4 on PostgreSQL).
        return _Refusal("emergency_stop", f"emergency stop in force: {stop['reason']}", "info")
    if limits.requires_entry_approval and not campaign.phase_entry_approved:
        return _Refusal(
            "phase_entry_approval",
            f"campaign '{campaign.campaign_id}' has no approved enter_phase_3 request",
            "critical",
        )
    if reservation.bid_micros > limits.max_bid_micros:
        return _Refusal(
            "max_bid",
            f"bid {format_dollars(reservation.bid_micros)} exceeds the maximum bid"
            f" {format_dollars(limits.max_bid_micros)}",
            "warning",
        )
    for limit_name, left in headroom.items():
        if reservation.amount_micros > left:
            return _Refusal(
                limit_name,
                f"reserving {format_dollars(reservation.amount_micros)} would pass the {limit_name};"
                f" {format_dollars(max(left, 0))} left",
                "warning",
            )
    return None


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


def _same_request(request: ReserveRequest, campaign_id: str, phase: int, amount: int, episode: str) -> None:
    if (request.campaign_id, request.phase, request.amount_micros, request.episode_id) != (
        campaign_id,
        phase,
        amount,
        episode,
    ):
        raise IdempotencyConflict(
            f"idempotency key {request.idempotency_key[:64]!r} was used for a different reservation"
        )


def _commit_outcome(reservation: Reservation) -> CommitOutcome:
    return CommitOutcome(
        reservation.reservation_id,
        reservation.committed_micros,
        reservation.amount_micros - reservation.committed_micros,
    )


def _key_conflict(key: str) -> IdempotencyConflict:
    return IdempotencyConflict(f"idempotency key {key[:64]!r} is already used by another reservation")


def _reserve_arguments(reservation: Reservation, limits: SpendLimits) -> tuple[object, ...]:
    """The parameters of safety_reserve, in its order (one column each of safety_reserve_batch)."""
    return (
        reservation.reservation_id,
        reservation.campaign_id,
        reservation.phase,
        reservation.amount_micros,
        reservation.idempotency_key,
        reservation.episode_id,
        reservation.run_id,
        reservation.bid_micros,
        reservation.day,
        reservation.created_at,
        reservation.expires_at,
        limits.episode_micros,
        limits.phase_total_micros,
        limits.max_bid_micros,
        limits.daily_ceiling_micros,
        limits.requires_entry_approval,
        limits.budget_steps_apply,
    )


def _reserve_outcome(reservation: Reservation, row: Row) -> ReserveOutcome | Exception | None:
    """What safety_reserve decided; None when the key was already decided (the stored answer holds)."""
    if row["outcome"] == "replay":
        return None
    if row["outcome"] == "unknown_campaign":
        return UnknownCampaign(f"campaign {reservation.campaign_id!r} is not registered")
    if row["outcome"] == "refused":
        return ReserveOutcome(False, None, row["refused_by"], row["reason"], row["remaining"])
    return ReserveOutcome(True, reservation, "", "", row["remaining"])


def _reserve_columns(batch: list[_ReserveItem]) -> list[list[object]]:
    arguments = [_reserve_arguments(item.reservation, item.limits) for item in batch]
    return [list(column) for column in zip(*arguments, strict=True)]


def _decided(batch: list[_ReserveItem], rows: Sequence[Row]) -> list[ReserveOutcome | Exception | None]:
    by_item = {row["item"]: row for row in rows}
    return [_reserve_outcome(item.reservation, by_item[index]) for index, item in enumerate(batch, start=1)]


async def _decide(executor: Executor, batch: list[_ReserveItem]) -> list[ReserveOutcome | Exception | None]:
    """safety_reserve_batch over the batch: one answer per request, in the batch's order."""
    return _decided(batch, await executor.fetch(_RESERVE_BATCH_SQL, *_reserve_columns(batch)))


async def _commit_and_decide(
    executor: Executor, commits: list[_CommitRequest], reserves: list[_ReserveItem]
) -> tuple[dict[str, int], list[ReserveOutcome | Exception | None]]:
    """safety_ledger_batch: the open reservations' commits, then the reservations, in one statement
    (one round trip, one transaction)."""
    rows = await executor.fetch(_LEDGER_BATCH_SQL, *_commit_columns(commits), *_reserve_columns(reserves))
    committed = {row["reservation_id"]: int(row["amount_micros"]) for row in rows if row["kind"] == "commit"}
    return committed, _decided(reserves, [row for row in rows if row["kind"] == "reserve"])


def _first_commits(batch: list[_CommitRequest]) -> dict[str, _CommitRequest]:
    """The first commit of each reservation in a batch (a second one takes the slow path)."""
    first: dict[str, _CommitRequest] = {}
    for request in batch:
        first.setdefault(request.reservation_id, request)
    return first


def _commit_columns(requests: list[_CommitRequest]) -> list[list[object]]:
    return [[request.reservation_id for request in requests], [request.actual_micros for request in requests],
            [request.commit_key for request in requests], [request.now for request in requests]]


async def _commit_open(executor: Executor, requests: list[_CommitRequest]) -> dict[str, int]:
    """Commit the open reservations among the requests; their reserved amounts by id."""
    rows = await executor.fetch(_COMMIT_BATCH_SQL, *_commit_columns(requests))
    return {row["reservation_id"]: int(row["amount_micros"]) for row in rows}


def _commit_results(
    batch: list[_CommitRequest], first: dict[str, _CommitRequest], committed: dict[str, int]
) -> list[int | Exception | None]:
    """Per request: the reserved amount when its commit took the fast path, else None."""
    return [
        committed.get(request.reservation_id) if first[request.reservation_id] is request else None
        for request in batch
    ]
