"""Run leases: which orchestrator replica drives a run, with a fencing token.

Rules:
- A run is driven by the replica holding its lease. A lease is taken when the run has none, when
  its holder let it expire (expires_at <= now), or when the taker already holds it; taking it from
  anyone else, or after it expired, increments the run's fencing token.
- The holder renews before expiry; a renewal that finds another owner or another token is refused
  and the holder stops driving the run (it lost the lease).
- Every write of the run document is fenced: it happens only in a transaction that still finds the
  writer's (owner, token) in the lease row, so a replica that lost its lease (paused by the kernel,
  partitioned away) can never overwrite the state written by the replica that took over.
- Operators may ask any replica to pause or resume any run: the request is written next to the
  lease (`requested_state`); the holder sees it at its next renewal and settles it once applied
  (or found moot), so a request survives a hand-over between renewal and application.
- An owner is `<replica id>#<incarnation>`: replica ids are unique among live replicas (a
  StatefulSet's pod names), each process start is a new incarnation. A replica that restarts takes
  its previous incarnation's leases at once, with a new token, instead of waiting for them to
  expire: that process is dead, since no two live processes share a replica id.
Time is wall-clock seconds from the replicas' clocks; the lease duration must exceed their skew.
"""

from __future__ import annotations

from dataclasses import dataclass

from gaelp.db import Database, Executor, Migration

MIGRATIONS = [
    Migration(
        1,
        "run leases",
        "CREATE TABLE run_leases (run_id TEXT PRIMARY KEY, owner TEXT NOT NULL, token BIGINT NOT NULL,"
        " expires_at DOUBLE PRECISION NOT NULL, requested_state TEXT NOT NULL DEFAULT '')",
    ),
]


class LeaseLost(RuntimeError):
    """The replica no longer holds the run's lease: it must stop driving the run."""


@dataclass(frozen=True)
class Lease:
    run_id: str
    owner: str
    token: int
    expires_at: float


def owner_name(replica_id: str, incarnation: str) -> str:
    return f"{replica_id}#{incarnation}"


def replica_of(owner: str) -> str:
    return owner.split("#", 1)[0]


class RunLeases:
    def __init__(self, db: Database, owner: str, duration_s: float) -> None:
        self.db = db
        self.owner = owner
        self.duration_s = duration_s

    def succeeds(self, owner: str) -> bool:
        """Is `owner` an earlier incarnation of this replica (dead, so its leases are ours)?"""
        return owner != self.owner and "#" in owner and replica_of(owner) == replica_of(self.owner)

    async def migrate(self) -> None:
        await self.db.migrate("orchestrator-leases", MIGRATIONS)

    async def acquire(self, run_id: str, now: float) -> Lease | None:
        """Take or keep the run's lease; None while another live replica holds it."""
        async with self.db.transaction(lock_key=f"lease:{run_id}") as tx:
            row = await tx.fetchrow("SELECT owner, token, expires_at FROM run_leases WHERE run_id = $1",
                                    run_id)
            expires_at = now + self.duration_s
            if row is None:
                await tx.execute(
                    "INSERT INTO run_leases (run_id, owner, token, expires_at) VALUES ($1, $2, 1, $3)",
                    run_id, self.owner, expires_at,
                )
                return Lease(run_id, self.owner, 1, expires_at)
            live, ours = row["expires_at"] > now, row["owner"] == self.owner
            if live and not ours and not self.succeeds(str(row["owner"])):
                return None
            # Ours and live: same token. Expired (even if it was ours) or our predecessor's: a new
            # token fences the old holder's writes, which may still be in flight.
            token = int(row["token"]) if live and ours else int(row["token"]) + 1
            await tx.execute(
                "UPDATE run_leases SET owner = $1, token = $2, expires_at = $3 WHERE run_id = $4",
                self.owner, token, expires_at, run_id,
            )
            return Lease(run_id, self.owner, token, expires_at)

    async def renew(self, lease: Lease, now: float) -> tuple[Lease, str]:
        """Extend a held lease; returns it with the operator's pending state request ('' if none)."""
        async with self.db.transaction(lock_key=f"lease:{lease.run_id}") as tx:
            row = await tx.fetchrow(
                "SELECT owner, token, expires_at, requested_state FROM run_leases WHERE run_id = $1",
                lease.run_id,
            )
            if row is None or row["owner"] != self.owner or int(row["token"]) != lease.token \
                    or row["expires_at"] <= now:
                raise LeaseLost(f"lease of run {lease.run_id} lost")
            expires_at = now + self.duration_s
            await tx.execute(
                "UPDATE run_leases SET expires_at = $1 WHERE run_id = $2",
                expires_at, lease.run_id,
            )
            return Lease(lease.run_id, self.owner, lease.token, expires_at), str(row["requested_state"])

    async def release(self, lease: Lease) -> None:
        """Give the lease up (drain): another replica may take the run at once."""
        await self.db.execute(
            "UPDATE run_leases SET expires_at = 0 WHERE run_id = $1 AND owner = $2 AND token = $3",
            lease.run_id, self.owner, lease.token,
        )

    async def request_state(self, run_id: str, state: str) -> None:
        """An operator's pause/resume for a run another replica drives."""
        await self.db.execute("UPDATE run_leases SET requested_state = $1 WHERE run_id = $2", state, run_id)

    async def settle_request(self, run_id: str, state: str) -> None:
        """The holder applied the request (or found it moot); a newer, different one stays."""
        await self.db.execute(
            "UPDATE run_leases SET requested_state = '' WHERE run_id = $1 AND requested_state = $2",
            run_id, state,
        )

    async def holder(self, run_id: str, now: float) -> Lease | None:
        row = await self.db.fetchrow("SELECT owner, token, expires_at FROM run_leases WHERE run_id = $1",
                                     run_id)
        if row is None or row["expires_at"] <= now:
            return None
        return Lease(run_id, str(row["owner"]), int(row["token"]), float(row["expires_at"]))


async def holds(tx: Executor, lease: Lease) -> bool:
    """Inside a write transaction: does the writer still hold the lease it was given?"""
    token = await tx.fetchval("SELECT token FROM run_leases WHERE run_id = $1 AND owner = $2",
                              lease.run_id, lease.owner)
    return token is not None and int(token) == lease.token
