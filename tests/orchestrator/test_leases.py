"""Run leases and the fenced run store on both backends: take, renew, lose, fence, hand over on
expiry or to the next incarnation of the same replica, forward phase inputs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from gaelp.db import Database
from orchestrator.leases import LeaseLost, RunLeases, holds, owner_name
from orchestrator.run_store import MIGRATIONS as RUN_MIGRATIONS
from orchestrator.run_store import RunStore


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


async def test_renewal_extends_and_carries_operator_requests_until_settled(database: Database) -> None:
    leases = RunLeases(database, "replica-a", 10.0)
    lease = await leases.acquire("run-1", now=100.0)
    assert lease is not None
    await RunLeases(database, "replica-b", 10.0).request_state("run-1", "paused")
    renewed, requested = await leases.renew(lease, now=108.0)
    assert requested == "paused" and renewed.expires_at == 118.0 and renewed.token == lease.token
    _, requested = await leases.renew(renewed, now=109.0)
    assert requested == "paused"  # not applied yet: it waits, also for a next holder
    await leases.settle_request("run-1", "running")  # settling another request changes nothing
    _, requested = await leases.renew(renewed, now=110.0)
    assert requested == "paused"
    await leases.settle_request("run-1", "paused")
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


async def test_a_restarted_replica_takes_its_predecessors_leases_at_once(database: Database) -> None:
    before = RunLeases(database, owner_name("orchestrator-0", "aaaa"), 10.0)
    old = await before.acquire("run-1", now=100.0)
    assert old is not None
    other = RunLeases(database, owner_name("orchestrator-1", "bbbb"), 10.0)
    assert await other.acquire("run-1", now=101.0) is None  # live, and not its own replica's
    after = RunLeases(database, owner_name("orchestrator-0", "cccc"), 10.0)
    new = await after.acquire("run-1", now=101.0)
    assert new is not None and new.token == old.token + 1
    with pytest.raises(LeaseLost):
        await before.renew(old, now=102.0)


def fixed(run_id: str, state: str, **fields: int) -> Callable[[], tuple[str, dict[str, Any]]]:
    """A save's snapshot of a document that does not change meanwhile."""
    return lambda: (state, {"run_id": run_id, "state": state, **fields})


async def open_store(database: Database, owner: str) -> RunStore:
    await database.migrate("orchestrator", RUN_MIGRATIONS)
    return RunStore(database, RunLeases(database, owner, 10.0))


async def test_saves_are_fenced_by_the_lease_and_a_take_over_loads_the_last_fenced_write(
        database: Database) -> None:
    first = await open_store(database, owner_name("a", "1"))
    second = await open_store(database, owner_name("b", "1"))
    with pytest.raises(LeaseLost):  # no lease, no write
        await first.save("run-1", fixed("run-1", "running"), 1.0)
    assert await first.claim_new("run-1", now=100.0)
    await first.save("run-1", fixed("run-1", "running", batches=3), 100.0)
    assert not await second.claim_new("run-1", now=100.5)  # leased, and it exists
    assert await second.take_over(now=105.0) == []  # the lease is live
    taken = await second.take_over(now=111.0)
    assert taken == [{"run_id": "run-1", "state": "running", "batches": 3}]
    with pytest.raises(LeaseLost):  # the stale holder cannot overwrite the new holder's state
        await first.save("run-1", fixed("run-1", "running", batches=2), 112.0)
    assert not first.holds("run-1") and second.holds("run-1")
    lost, _ = await first.renew(now=112.0)
    assert lost == []  # already dropped by the refused save
    await second.save("run-1", fixed("run-1", "completed", batches=4), 113.0)
    assert await first.load("run-1") == {"run_id": "run-1", "state": "completed", "batches": 4}
    assert await first.take_over(now=200.0) == []  # finished runs are nobody's to take


async def test_a_save_waiting_for_the_run_lock_writes_the_state_current_when_it_gets_it(
        database: Database) -> None:
    store = await open_store(database, owner_name("a", "1"))
    assert await store.claim_new("run-1", now=100.0)
    document = {"run_id": "run-1", "state": "running"}
    async with store.fenced("run-1"):  # another save of the run holds its lock
        waiting = asyncio.create_task(store.save("run-1", lambda: (document["state"], dict(document)), 101.0))
        await asyncio.sleep(0.2)
        document["state"] = "paused"  # changed (and saved by its own caller) while the first one waits
    await waiting
    assert await store.load("run-1") == {"run_id": "run-1", "state": "paused"}


async def test_renewal_reports_lost_leases_and_operator_requests(database: Database) -> None:
    first = await open_store(database, owner_name("a", "1"))
    second = await open_store(database, owner_name("b", "1"))
    for run_id in ("run-1", "run-2"):
        assert await first.claim_new(run_id, now=100.0)
        await first.save(run_id, fixed(run_id, "running"), 100.0)
    await second.request_state("run-2", "paused")
    lost, requests = await first.renew(now=105.0)
    assert lost == [] and requests == {"run-2": "paused"}
    assert not await first.claim_new("run-1", now=105.5)  # driven here already
    assert [d["run_id"] for d in await second.take_over(now=120.0)] == ["run-1", "run-2"]
    lost, requests = await first.renew(now=121.0)
    assert sorted(lost) == ["run-1", "run-2"] and requests == {} and first.held == {}
    _, requests = await second.renew(now=121.0)
    assert requests == {"run-2": "paused"}  # the request not applied before the hand-over waits
    await second.release_all()
    assert [d["run_id"] for d in await first.take_over(now=121.5)] == ["run-1", "run-2"]


async def test_forwarded_phase_inputs_wait_in_order_until_settled(database: Database) -> None:
    store = await open_store(database, owner_name("a", "1"))
    await store.forward("run-1", "gaelp.assessments.v1", b"\x00first")
    await store.forward("run-2", "gaelp.violations.v1", b"other run")
    await store.forward("run-1", "gaelp.violations.v1", b"\xffsecond")
    entries = await store.forwarded("run-1")
    assert [(e.topic, e.payload) for e in entries] == [("gaelp.assessments.v1", b"\x00first"),
                                                      ("gaelp.violations.v1", b"\xffsecond")]
    await store.settle(entries[0].id)
    assert [e.payload for e in await store.forwarded("run-1")] == [b"\xffsecond"]
