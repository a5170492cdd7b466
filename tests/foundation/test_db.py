"""The data layer gives the same behaviour on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from gaelp.db import Database, Migration

MIGRATIONS = [
    Migration(1, "counters", "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)"),
    Migration(2, "seed", "INSERT INTO counters (name, value) VALUES ('a', 0)"),
]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db.sqlite'}"
    return request.getfixturevalue("postgres_url")


async def test_migrations_apply_once(database_url: str) -> None:
    db = await Database.connect(database_url)
    try:
        assert await db.migrate("test", MIGRATIONS) == [1, 2]
        assert await db.migrate("test", MIGRATIONS) == []
        assert await db.fetchval("SELECT value FROM counters WHERE name = $1", "a") == 0
    finally:
        await db.close()


async def test_services_starting_together_migrate_one_fresh_database(database_url: str) -> None:
    """Replicas and services share one database and start at the same time: each migrates it, and
    the shared bookkeeping table is created once, whoever comes first (two orchestrator replicas
    once failed on PostgreSQL's unique index of type names)."""
    others = [Migration(1, "other", "CREATE TABLE others (name TEXT PRIMARY KEY)")]
    components = ["test" if index % 2 else "other" for index in range(8)]
    databases = [await Database.connect(database_url) for _ in components]
    try:
        applied = await asyncio.gather(*(db.migrate(component, MIGRATIONS if component == "test" else others)
                                         for component, db in zip(components, databases, strict=True)))
        # Each migration is applied once, by whichever process got to it first.
        for component, versions in (("test", [1, 2]), ("other", [1])):
            assert sorted(v for c, done in zip(components, applied, strict=True) if c == component
                          for v in done) == versions
        rows = await databases[0].fetch("SELECT component, version FROM schema_migrations")
        assert sorted((row["component"], row["version"]) for row in rows) == [
            ("other", 1), ("test", 1), ("test", 2)]
    finally:
        for db in databases:
            await db.close()


async def test_locked_read_modify_write_loses_no_update(database_url: str) -> None:
    db = await Database.connect(database_url)
    await db.migrate("test", MIGRATIONS)

    async def increment() -> None:
        async with db.transaction(lock_key="counter:a") as tx:
            value = await tx.fetchval("SELECT value FROM counters WHERE name = $1", "a")
            await asyncio.sleep(0)  # invite interleaving
            await tx.execute("UPDATE counters SET value = $1 WHERE name = $2", value + 1, "a")

    try:
        await asyncio.gather(*(increment() for _ in range(50)))
        assert await db.fetchval("SELECT value FROM counters WHERE name = $1", "a") == 50
    finally:
        await db.close()


async def test_failed_transaction_rolls_back(database_url: str) -> None:
    db = await Database.connect(database_url)
    await db.migrate("test", MIGRATIONS)
    try:
        with pytest.raises(RuntimeError):
            async with db.transaction() as tx:
                await tx.execute("UPDATE counters SET value = 99 WHERE name = $1", "a")
                raise RuntimeError("abort")
        assert await db.fetchval("SELECT value FROM counters WHERE name = $1", "a") == 0
    finally:
        await db.close()


async def test_a_connection_goes_back_to_the_pool_without_a_reset_round_trip(postgres_url: str) -> None:
    """The pool's connection answers the query and goes back as it is: its last statement, seen
    from another session, is the caller's, not asyncpg's default RESET ALL / unlock-all script."""
    db = await Database.connect(postgres_url, pool_size=1)
    try:
        assert await db.fetchval("SELECT 'gaelp-pool-marker'") == "gaelp-pool-marker"
        observer = await asyncpg.connect(postgres_url)
        try:
            queries = [row["query"] for row in await observer.fetch(
                "SELECT query FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid()")]
        finally:
            await observer.close()
        assert queries == ["SELECT 'gaelp-pool-marker'"]
    finally:
        await db.close()


async def test_a_cancelled_transaction_is_rolled_back_and_frees_its_lock(postgres_url: str) -> None:
    """Without the reset query, asyncpg still rolls back what a cancelled caller left open: the next
    user of the one pooled connection takes the same lock at once and sees none of the writes."""
    db = await Database.connect(postgres_url, pool_size=1)
    await db.migrate("test", MIGRATIONS)
    started = asyncio.Event()

    async def abandoned() -> None:
        async with db.transaction(lock_key="counter:a") as tx:
            await tx.execute("UPDATE counters SET value = 99 WHERE name = $1", "a")
            started.set()
            await tx.execute("SELECT pg_sleep(30)")

    try:
        task = asyncio.create_task(abandoned())
        await asyncio.wait_for(started.wait(), timeout=10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with asyncio.timeout(10):
            async with db.transaction(lock_key="counter:a") as tx:
                assert await tx.fetchval("SELECT value FROM counters WHERE name = $1", "a") == 0
                assert await tx.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database ="
                    " (SELECT oid FROM pg_database WHERE datname = current_database())") == 1
    finally:
        await db.close()
