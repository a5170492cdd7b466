"""The run store: each run's state as one JSON document, on SQLite or PostgreSQL, shared by replicas.

Each unfinished run is driven by the one replica holding its lease (`leases.py`). This store keeps
the leases this process holds (`held`) and fences every save with one of them: a save for a run
whose lease this process does not hold, or holds with a token another replica has since replaced,
raises LeaseLost and writes nothing. Saves take the same per-run lock as lease changes, so a save
either lands before a take-over (and the new holder loads it) or is refused after it.

Phase inputs (assessments, violations) reach whichever replica the consumer group gave their
partition; one for a run another replica drives is forwarded here (`forward`) and its holder
applies it (`forwarded`, `settle`), so none is lost to a run changing hands.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from gaelp.db import Database, Executor, Migration
from orchestrator.leases import Lease, LeaseLost, RunLeases, holds, replica_of

logger = logging.getLogger(__name__)

UNFINISHED = ("running", "paused")

MIGRATIONS = [
    Migration(
        1,
        "runs",
        "CREATE TABLE runs (run_id TEXT PRIMARY KEY, state TEXT NOT NULL, document TEXT NOT NULL,"
        " updated_at DOUBLE PRECISION NOT NULL)",
    ),
    Migration(
        2,
        "phase inputs forwarded to the replica driving their run",
        sqlite_sql="CREATE TABLE run_inbox (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL,"
        " topic TEXT NOT NULL, payload TEXT NOT NULL);"
        " CREATE INDEX run_inbox_run ON run_inbox (run_id, id)",
        postgres_sql="CREATE TABLE run_inbox (id BIGSERIAL PRIMARY KEY, run_id TEXT NOT NULL,"
        " topic TEXT NOT NULL, payload TEXT NOT NULL);"
        " CREATE INDEX run_inbox_run ON run_inbox (run_id, id)",
    ),
]


@dataclass(frozen=True)
class Forwarded:
    id: int
    topic: str
    payload: bytes


class RunStore:
    def __init__(self, db: Database, leases: RunLeases) -> None:
        self.db = db
        self.leases = leases
        self.held: dict[str, Lease] = {}

    @classmethod
    async def open(cls, url: str, owner: str, lease_duration_s: float) -> RunStore:
        db = await Database.connect(url)
        await db.migrate("orchestrator", MIGRATIONS)
        leases = RunLeases(db, owner, lease_duration_s)
        await leases.migrate()
        return cls(db, leases)

    @property
    def owner(self) -> str:
        return self.leases.owner

    # ---- leases ------------------------------------------------------------------------------
    def holds(self, run_id: str) -> bool:
        return run_id in self.held

    async def claim_new(self, run_id: str, now: float) -> bool:
        """Take the lease of a run about to be created; False when the run exists already."""
        if run_id in self.held:
            return False  # being created or driven here
        lease = await self.leases.acquire(run_id, now)
        if lease is None:
            return False
        if await self.load(run_id) is not None:
            await self.leases.release(lease)
            return False
        self.held[run_id] = lease
        return True

    async def take_over(self, now: float) -> list[dict[str, Any]]:
        """Take the lease of every unfinished run nobody holds (none yet, expired, or held by this
        replica's previous incarnation) and return their documents, loaded after the lease."""
        predecessor = replica_of(self.owner) + "#"
        rows = await self.db.fetch(
            "SELECT r.run_id FROM runs r LEFT JOIN run_leases l ON l.run_id = r.run_id"
            " WHERE r.state IN ('running', 'paused', 'awaiting_approval')"
            " AND (l.run_id IS NULL OR l.expires_at <= $1"
            " OR (substr(l.owner, 1, $2) = $3 AND l.owner <> $4)) ORDER BY r.updated_at",
            now, len(predecessor), predecessor, self.owner,
        )
        taken = []
        for row in rows:
            run_id = str(row["run_id"])
            if run_id in self.held:
                continue
            lease = await self.leases.acquire(run_id, now)
            if lease is None:
                continue  # another replica was faster
            document = await self.load(run_id)
            if document is None or document.get("state") not in UNFINISHED:
                await self.leases.release(lease)  # it finished just before our lease
                continue
            self.held[run_id] = lease
            taken.append(document)
        return taken

    async def renew(self, now: float) -> tuple[list[str], dict[str, str]]:
        """Renew every held lease: the runs whose lease was lost, and the operators' pending
        pause/resume requests by run. A lease that could not be renewed (database unreachable)
        counts as lost once it has expired by this replica's clock."""
        lost, requests = [], {}
        for run_id, lease in list(self.held.items()):
            try:
                renewed, requested = await self.leases.renew(lease, now)
            except LeaseLost:
                self.held.pop(run_id, None)
                lost.append(run_id)
                continue
            except Exception:
                logger.warning("lease renewal of run %s failed", run_id, exc_info=True)
                if lease.expires_at <= now:
                    self.held.pop(run_id, None)
                    lost.append(run_id)
                continue
            if self.held.get(run_id) == lease:  # not released while the renewal was in flight
                self.held[run_id] = renewed
            if requested:
                requests[run_id] = requested
        return lost, requests

    async def release(self, run_id: str) -> None:
        lease = self.held.pop(run_id, None)
        if lease is not None:
            await self.leases.release(lease)

    async def release_all(self) -> None:
        for run_id in list(self.held):
            await self.release(run_id)

    async def request_state(self, run_id: str, state: str) -> None:
        await self.leases.request_state(run_id, state)

    async def settle_request(self, run_id: str, state: str) -> None:
        await self.leases.settle_request(run_id, state)

    # ---- documents ---------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def fenced(self, run_id: str) -> AsyncIterator[Executor]:
        """A transaction for the run's state that commits only while this process holds the run's
        lease (LeaseLost, nothing written, otherwise); the run document and the money phases'
        records are both written through it."""
        lease = self.held.get(run_id)
        if lease is None:
            raise LeaseLost(f"run {run_id} is not driven by this replica")
        async with self.db.transaction(lock_key=f"lease:{run_id}") as tx:
            if not await holds(tx, lease):
                self.held.pop(run_id, None)
                raise LeaseLost(f"lease of run {run_id} lost: another replica drives it now")
            yield tx

    async def save(self, run_id: str, snapshot: Callable[[], tuple[str, dict[str, Any]]],
                   updated_at: float) -> None:
        """Write the run's (state, document) as `snapshot` gives them once the run's lock is held,
        fenced by the lease this process holds (LeaseLost if none). Taken before the lock, a save
        that waited behind a newer one would overwrite it with an older state."""
        async with self.fenced(run_id) as tx:
            state, document = snapshot()
            text = json.dumps(document)
            changed = await tx.execute(
                "UPDATE runs SET state = $1, document = $2, updated_at = $3 WHERE run_id = $4",
                state, text, updated_at, run_id,
            )
            if not changed:
                await tx.execute(
                    "INSERT INTO runs (run_id, state, document, updated_at) VALUES ($1, $2, $3, $4)",
                    run_id, state, text, updated_at,
                )

    async def load(self, run_id: str) -> dict[str, Any] | None:
        row = await self.db.fetchrow("SELECT document FROM runs WHERE run_id = $1", run_id)
        return None if row is None else json.loads(row["document"])

    async def unfinished(self) -> list[dict[str, Any]]:
        rows = await self.db.fetch(
            "SELECT document FROM runs WHERE state IN ('running', 'paused', 'awaiting_approval')"
            " ORDER BY updated_at"
        )
        return [json.loads(row["document"]) for row in rows]

    async def recent(self, state: str, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` run documents (by last update), of one state or (empty) of all."""
        if state:
            rows = await self.db.fetch(
                "SELECT document FROM runs WHERE state = $1 ORDER BY updated_at DESC LIMIT $2", state, limit
            )
        else:
            rows = await self.db.fetch("SELECT document FROM runs ORDER BY updated_at DESC LIMIT $1", limit)
        return [json.loads(row["document"]) for row in rows]

    # ---- forwarded phase inputs --------------------------------------------------------------
    async def forward(self, run_id: str, topic: str, payload: bytes) -> None:
        await self.db.execute(
            "INSERT INTO run_inbox (run_id, topic, payload) VALUES ($1, $2, $3)",
            run_id, topic, base64.b64encode(payload).decode("ascii"),
        )

    async def forwarded(self, run_id: str) -> list[Forwarded]:
        """The run's forwarded inputs, oldest first."""
        rows = await self.db.fetch(
            "SELECT id, topic, payload FROM run_inbox WHERE run_id = $1 ORDER BY id", run_id
        )
        return [Forwarded(int(row["id"]), str(row["topic"]), base64.b64decode(row["payload"]))
                for row in rows]

    async def settle(self, entry_id: int) -> None:
        await self.db.execute("DELETE FROM run_inbox WHERE id = $1", entry_id)

    async def close(self) -> None:
        await self.db.close()
