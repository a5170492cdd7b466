"""The run store: each run's state as one JSON document, on SQLite or PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

from gaelp.db import Database, Migration

MIGRATIONS = [
    Migration(
        1,
        "runs",
        "CREATE TABLE runs (run_id TEXT PRIMARY KEY, state TEXT NOT NULL, document TEXT NOT NULL,"
        " updated_at DOUBLE PRECISION NOT NULL)",
    ),
]


class RunStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    @classmethod
    async def open(cls, url: str) -> RunStore:
        db = await Database.connect(url)
        await db.migrate("orchestrator", MIGRATIONS)
        return cls(db)

    async def save(self, run_id: str, state: str, document: dict[str, Any], updated_at: float) -> None:
        text = json.dumps(document)
        async with self.db.transaction(lock_key=f"run:{run_id}") as tx:
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
            "SELECT document FROM runs WHERE state IN ('running', 'paused') ORDER BY updated_at"
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

    async def close(self) -> None:
        await self.db.close()
