"""Async database access with one SQL dialect for callers: PostgreSQL's $1, $2 placeholders.

SQLite: one aiosqlite connection in WAL mode; transactions are serialized by an asyncio lock and
opened with BEGIN IMMEDIATE, so a read-check-write inside one transaction cannot interleave with
another writer. PostgreSQL: an asyncpg pool; `transaction(lock_key=...)` takes a transaction-scoped
advisory lock on the key, which serializes writers of the same key (e.g. one campaign's ledger)
without locking the whole table.

Callers leave no session state on a PostgreSQL connection: locks are transaction-scoped
(pg_advisory_xact_lock), settings local to a transaction (set_config(..., true)), and nothing
LISTENs or opens a cursor outside a transaction. So a connection goes back to the pool without
asyncpg's default reset query (RESET ALL, pg_advisory_unlock_all(), ...), which is one more round
trip after every query: the ledger's group commit paid it on every batch (batch p50 2.3 -> 1.6-1.9
ms at 500 reservations/s, docs/ledger.md). asyncpg still rolls back a transaction left open.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import aiosqlite
import asyncpg

Row = dict[str, Any]
_PLACEHOLDER = re.compile(r"\$(\d+)")


@dataclass(frozen=True)
class Migration:
    """One schema step. `sql` is used for both dialects unless a dialect-specific text is given."""

    version: int
    description: str
    sql: str = ""
    sqlite_sql: str = ""
    postgres_sql: str = ""

    def text_for(self, dialect: str) -> str:
        specific = self.sqlite_sql if dialect == "sqlite" else self.postgres_sql
        text = specific or self.sql
        if not text:
            raise ValueError(f"migration {self.version} has no SQL for {dialect}")
        return text


class Executor(Protocol):
    async def execute(self, sql: str, *params: Any) -> int: ...
    async def fetch(self, sql: str, *params: Any) -> list[Row]: ...
    async def fetchrow(self, sql: str, *params: Any) -> Row | None: ...
    async def fetchval(self, sql: str, *params: Any) -> Any: ...


class _SqliteExecutor:
    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._connection = connection

    async def execute(self, sql: str, *params: Any) -> int:
        cursor = await self._connection.execute(_to_sqlite(sql), params)
        return cursor.rowcount

    async def fetch(self, sql: str, *params: Any) -> list[Row]:
        cursor = await self._connection.execute(_to_sqlite(sql), params)
        rows = await cursor.fetchall()
        return [dict(row) for row in rows]

    async def fetchrow(self, sql: str, *params: Any) -> Row | None:
        cursor = await self._connection.execute(_to_sqlite(sql), params)
        row = await cursor.fetchone()
        return dict(row) if row is not None else None

    async def fetchval(self, sql: str, *params: Any) -> Any:
        row = await self.fetchrow(sql, *params)
        return next(iter(row.values())) if row else None


class _PostgresExecutor:
    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection

    async def execute(self, sql: str, *params: Any) -> int:
        status = await self._connection.execute(sql, *params)
        last = status.rsplit(" ", 1)[-1]
        return int(last) if last.isdigit() else 0

    async def fetch(self, sql: str, *params: Any) -> list[Row]:
        return [dict(row) for row in await self._connection.fetch(sql, *params)]

    async def fetchrow(self, sql: str, *params: Any) -> Row | None:
        row = await self._connection.fetchrow(sql, *params)
        return dict(row) if row is not None else None

    async def fetchval(self, sql: str, *params: Any) -> Any:
        return await self._connection.fetchval(sql, *params)


async def _no_session_state(connection: asyncpg.Connection) -> None:
    """The pool's reset: nothing to undo beyond the open transaction asyncpg rolls back itself."""


def _to_sqlite(sql: str) -> str:
    return _PLACEHOLDER.sub(r"?\1", sql)


def sqlite_path(url: str) -> str:
    """sqlite:///relative.db, sqlite:////absolute.db or sqlite:///:memory:"""
    path = url.removeprefix("sqlite://")
    if not path.startswith("/"):
        raise ValueError(f"bad sqlite url {url!r}: expected sqlite:///path")
    path = path[1:]
    return path or ":memory:"


class Database:
    """Use `await Database.connect(url)`; every query method takes $n placeholders."""

    def __init__(
        self,
        dialect: Literal["sqlite", "postgresql"],
        sqlite: aiosqlite.Connection | None = None,
        pool: asyncpg.Pool | None = None,
    ) -> None:
        self.dialect = dialect
        self._sqlite = sqlite
        self._pool = pool
        self._sqlite_lock = asyncio.Lock()

    @classmethod
    async def connect(cls, url: str, *, pool_size: int = 10) -> Database:
        if url.startswith("sqlite://"):
            path = sqlite_path(url)
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            connection = await aiosqlite.connect(path, isolation_level=None, timeout=30)
            connection.row_factory = sqlite3.Row
            await connection.execute("PRAGMA journal_mode=WAL")
            await connection.execute("PRAGMA synchronous=FULL")
            await connection.execute("PRAGMA busy_timeout=30000")
            return cls("sqlite", sqlite=connection)
        if url.startswith(("postgresql://", "postgres://")):
            pool = await asyncpg.create_pool(url, min_size=1, max_size=pool_size, reset=_no_session_state)
            return cls("postgresql", pool=pool)
        raise ValueError(f"unsupported database url {url!r}")

    async def close(self) -> None:
        if self._sqlite is not None:
            await self._sqlite.close()
        if self._pool is not None:
            await self._pool.close()

    @contextlib.asynccontextmanager
    async def transaction(self, lock_key: str | None = None) -> AsyncIterator[Executor]:
        """A transaction; with lock_key, writers of the same key are serialized until commit."""
        if self._sqlite is not None:
            async with self._sqlite_lock:
                # A cancelled caller (e.g. its RPC passed the deadline) must not leave the one
                # connection inside a transaction: BEGIN, ROLLBACK and COMMIT run to the end shielded.
                begun = asyncio.ensure_future(self._sqlite.execute("BEGIN IMMEDIATE"))
                try:
                    await asyncio.shield(begun)
                    yield _SqliteExecutor(self._sqlite)
                except BaseException:
                    await asyncio.shield(self._sqlite_roll_back(begun))
                    raise
                await asyncio.shield(self._sqlite.execute("COMMIT"))
            return
        assert self._pool is not None
        async with self._pool.acquire() as connection, connection.transaction():
            if lock_key is not None:
                await connection.execute("SELECT pg_advisory_xact_lock(hashtext($1))", lock_key)
            yield _PostgresExecutor(connection)

    async def _sqlite_roll_back(self, begun: asyncio.Future[Any]) -> None:
        assert self._sqlite is not None
        with contextlib.suppress(Exception):
            await begun
        if self._sqlite.in_transaction:
            await self._sqlite.execute("ROLLBACK")

    async def execute(self, sql: str, *params: Any) -> int:
        async with self.transaction() as tx:
            return await tx.execute(sql, *params)

    async def fetch(self, sql: str, *params: Any) -> list[Row]:
        async with self._reader() as reader:
            return await reader.fetch(sql, *params)

    async def fetchrow(self, sql: str, *params: Any) -> Row | None:
        async with self._reader() as reader:
            return await reader.fetchrow(sql, *params)

    async def fetchval(self, sql: str, *params: Any) -> Any:
        async with self._reader() as reader:
            return await reader.fetchval(sql, *params)

    @contextlib.asynccontextmanager
    async def _reader(self) -> AsyncIterator[Executor]:
        if self._sqlite is not None:
            async with self._sqlite_lock:
                yield _SqliteExecutor(self._sqlite)
            return
        assert self._pool is not None
        async with self._pool.acquire() as connection:
            yield _PostgresExecutor(connection)

    async def migrate(self, component: str, migrations: Sequence[Migration]) -> list[int]:
        """Apply the component's migrations not yet applied, in version order; return them.
        Processes sharing the database may migrate at the same time: each migration runs under its
        component's lock, and the shared bookkeeping table is created under a lock of its own
        (PostgreSQL's CREATE TABLE IF NOT EXISTS is not safe against a concurrent one)."""
        async with self.transaction(lock_key="migrations:schema_migrations") as tx:
            await tx.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " component TEXT NOT NULL, version INTEGER NOT NULL, description TEXT NOT NULL,"
                " PRIMARY KEY (component, version))"
            )
        applied: list[int] = []
        for migration in sorted(migrations, key=lambda m: m.version):
            async with self.transaction(lock_key=f"migrations:{component}") as tx:
                done = await tx.fetchval(
                    "SELECT COUNT(*) FROM schema_migrations WHERE component = $1 AND version = $2",
                    component,
                    migration.version,
                )
                if done:
                    continue
                for statement in _statements(migration.text_for(self.dialect)):
                    await tx.execute(statement)
                await tx.execute(
                    "INSERT INTO schema_migrations (component, version, description) VALUES ($1, $2, $3)",
                    component,
                    migration.version,
                    migration.description,
                )
                applied.append(migration.version)
        return applied


def _statements(script: str) -> list[str]:
    """Split on semicolons outside $$-quoted bodies (function definitions contain semicolons)."""
    statements, current = [], ""
    for index, piece in enumerate(script.split("$$")):
        if index % 2:
            current += f"$${piece}$$"
            continue
        first, *rest = piece.split(";")
        current += first
        if rest:
            statements.append(current)
            *complete, current = rest
            statements += complete
    statements.append(current)
    return [statement.strip() for statement in statements if statement.strip()]
