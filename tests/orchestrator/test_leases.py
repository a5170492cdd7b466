"""Run leases on both run-store backends: take, renew, lose, fence, hand over on expiry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gaelp.db import Database
from orchestrator.leases import LeaseLost, RunLeases, holds


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'runs.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    db = await Database.connect(database_url)
    await RunLeases(db, "setup", 1.0).migrate()
    yield db
    await db.close()


async def test_a_live_lease_keeps_other_replicas_out(database: Database) -> None:
    first, second = RunLeases(database, "replica-a", 10.0), RunLeases(database, "replica-b", 10.0)
    lease = await first.acquire("run-1", now=100.0)
    assert lease is not None and lease.token == 1
    assert await second.acquire("run-1", now=105.0) is None
    again = await first.acquire("run-1", now=105.0)  # the holder re-acquiring keeps its token
    assert again is not None and again.token == 1


async def test_an_expired_lease_moves_with_a_new_token_and_fences_the_old_holder(database: Database) -> None:
    first, second = RunLeases(database, "replica-a", 10.0), RunLeases(database, "replica-b", 10.0)
    old = await first.acquire("run-1", now=100.0)
    assert old is not None
    new = await second.acquire("run-1", now=110.5)
    assert new is not None and new.token == old.token + 1 and new.owner == "replica-b"
    with pytest.raises(LeaseLost):
        await first.renew(old, now=111.0)
    async with database.transaction() as tx:
        assert not await holds(tx, old)
        assert await holds(tx, new)


async def test_renewal_extends_and_carries_operator_requests_once(database: Database) -> None:
    leases = RunLeases(database, "replica-a", 10.0)
    lease = await leases.acquire("run-1", now=100.0)
    assert lease is not None
    await RunLeases(database, "replica-b", 10.0).request_state("run-1", "paused")
    renewed, requested = await leases.renew(lease, now=108.0)
    assert requested == "paused" and renewed.expires_at == 118.0 and renewed.token == lease.token
    _, requested = await leases.renew(renewed, now=115.0)
    assert requested == ""
    with pytest.raises(LeaseLost):  # expired before the renewal came
        await leases.renew(renewed, now=200.0)


async def test_release_lets_another_replica_take_over_at_once(database: Database) -> None:
    first, second = RunLeases(database, "replica-a", 10.0), RunLeases(database, "replica-b", 10.0)
    lease = await first.acquire("run-1", now=100.0)
    assert lease is not None
    await first.release(lease)
    taken = await second.acquire("run-1", now=100.1)
    assert taken is not None and taken.token == 2
    assert await second.holder("run-1", now=100.2) == taken
