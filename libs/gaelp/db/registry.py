"""Storage of the environment registry on the shared data layer (SQLite or PostgreSQL).

The store keeps what it is given: validation, version parsing and resolution live in the service.
What it guarantees is immutability: register() inserts a new (id, version) or, when that version
exists, answers created=False for the identical content and raises VersionConflict for any other.
"""

from __future__ import annotations

import builtins
import json
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from gaelp.db.database import Database, Executor, Row
from gaelp.db.registry_migrations import COMPONENT, MIGRATIONS


class RemoteProtocol(StrEnum):
    NONE = ""  # a local environment
    MCP = "mcp"
    HTTP = "http"


class Health(StrEnum):
    NOT_PROBED = "not_probed"  # local environments
    UNKNOWN = "unknown"  # remote, no probe finished yet
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


@dataclass(frozen=True)
class EnvironmentContent:
    """The immutable part of one environment version."""

    entry_point: str
    config_json: str
    phases: tuple[int, ...]
    tags: tuple[str, ...]
    remote_url: str
    remote_protocol: RemoteProtocol
    description: str

    def differing_fields(self, other: EnvironmentContent) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)]


@dataclass(frozen=True)
class StoredEnvironment:
    env_id: str
    version: str
    content: EnvironmentContent
    registered_at: datetime
    deprecated: bool
    deprecation_reason: str
    health: Health
    health_detail: str
    health_checked_at: datetime | None


@dataclass(frozen=True)
class RemoteTarget:
    url: str
    protocol: RemoteProtocol


class VersionConflict(Exception):
    """A different spec is already registered under this (id, version)."""

    def __init__(self, existing: StoredEnvironment, differing: list[str]) -> None:
        self.existing = existing
        self.differing = differing
        super().__init__(
            f"environment {existing.env_id!r} version {existing.version} is already registered with a "
            f"different spec (differs in: {', '.join(differing)}); versions are immutable, "
            "register the change under a new version"
        )


def _to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _from_ms(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1000, tz=UTC)


def _from_row(row: Row) -> StoredEnvironment:
    content = EnvironmentContent(
        entry_point=row["entry_point"],
        config_json=row["config_json"],
        phases=tuple(json.loads(row["phases_json"])),
        tags=tuple(json.loads(row["tags_json"])),
        remote_url=row["remote_url"],
        remote_protocol=RemoteProtocol(row["remote_protocol"]),
        description=row["description"],
    )
    registered_at = _from_ms(row["registered_at_ms"])
    assert registered_at is not None  # NOT NULL column
    return StoredEnvironment(
        env_id=row["env_id"],
        version=row["version"],
        content=content,
        registered_at=registered_at,
        deprecated=bool(row["deprecated"]),
        deprecation_reason=row["deprecation_reason"],
        health=Health(row["health"]),
        health_detail=row["health_detail"],
        health_checked_at=_from_ms(row["health_checked_at_ms"]),
    )


_SELECT = "SELECT * FROM environment_specs"


class RegistryStore:
    """Use `await RegistryStore.open(db)`; it applies the registry's migrations first."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @classmethod
    async def open(cls, db: Database) -> RegistryStore:
        await db.migrate(COMPONENT, MIGRATIONS)
        return cls(db)

    async def register(
        self, env_id: str, version: str, content: EnvironmentContent, now: datetime
    ) -> tuple[StoredEnvironment, bool]:
        """Insert a new version -> (spec, True); the identical one again -> (spec, False)."""
        async with self.db.transaction(lock_key=f"environment:{env_id}") as tx:
            existing = await self._get(tx, env_id, version)
            if existing is not None:
                if existing.content == content:
                    return existing, False
                raise VersionConflict(existing, existing.content.differing_fields(content))
            initial_health = Health.UNKNOWN if content.remote_url else Health.NOT_PROBED
            await tx.execute(
                "INSERT INTO environment_specs (env_id, version, entry_point, config_json, phases_json,"
                " tags_json, remote_url, remote_protocol, description, registered_at_ms, health,"
                " health_detail)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                env_id,
                version,
                content.entry_point,
                content.config_json,
                json.dumps(list(content.phases)),
                json.dumps(list(content.tags)),
                content.remote_url,
                content.remote_protocol.value,
                content.description,
                _to_ms(now),
                initial_health.value,
                "not probed yet" if content.remote_url else "",
            )
            for phase in content.phases:
                await tx.execute(
                    "INSERT INTO environment_phases (env_id, version, phase) VALUES ($1, $2, $3)",
                    env_id,
                    version,
                    phase,
                )
            for tag in content.tags:
                await tx.execute(
                    "INSERT INTO environment_tags (env_id, version, tag) VALUES ($1, $2, $3)",
                    env_id,
                    version,
                    tag,
                )
            created = await self._get(tx, env_id, version)
        assert created is not None
        return created, True

    async def get(self, env_id: str, version: str) -> StoredEnvironment | None:
        row = await self.db.fetchrow(f"{_SELECT} WHERE env_id = $1 AND version = $2", env_id, version)
        return _from_row(row) if row is not None else None

    async def versions(self, env_id: str) -> list[StoredEnvironment]:
        """Every version of one environment, deprecated ones included, in no particular order."""
        rows = await self.db.fetch(f"{_SELECT} WHERE env_id = $1", env_id)
        return [_from_row(row) for row in rows]

    async def list(
        self, *, phase: int | None = None, tag: str | None = None, include_deprecated: bool = False
    ) -> list[StoredEnvironment]:
        """Every version matching all the filters given, in no particular order."""
        conditions: list[str] = []
        params: list[Any] = []
        if phase is not None:
            params.append(phase)
            conditions.append(
                "EXISTS (SELECT 1 FROM environment_phases p WHERE p.env_id = s.env_id"
                f" AND p.version = s.version AND p.phase = ${len(params)})"
            )
        if tag is not None:
            params.append(tag)
            conditions.append(
                "EXISTS (SELECT 1 FROM environment_tags t WHERE t.env_id = s.env_id"
                f" AND t.version = s.version AND t.tag = ${len(params)})"
            )
        if not include_deprecated:
            conditions.append("s.deprecated = 0")
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        rows = await self.db.fetch(f"SELECT s.* FROM environment_specs s{where}", *params)
        return [_from_row(row) for row in rows]

    async def deprecate(
        self, env_id: str, version: str, reason: str, now: datetime
    ) -> StoredEnvironment | None:
        """Mark a version deprecated (a no-op keeping the first reason if it already is); None if absent."""
        async with self.db.transaction(lock_key=f"environment:{env_id}") as tx:
            await tx.execute(
                "UPDATE environment_specs SET deprecated = 1, deprecation_reason = $3,"
                " deprecated_at_ms = $4 WHERE env_id = $1 AND version = $2 AND deprecated = 0",
                env_id,
                version,
                reason,
                _to_ms(now),
            )
            return await self._get(tx, env_id, version)

    async def remote_targets(self) -> builtins.list[RemoteTarget]:  # `list` here is the method above
        """The distinct remote endpoints of non-deprecated versions: what the health monitor probes."""
        rows = await self.db.fetch(
            "SELECT DISTINCT remote_url, remote_protocol FROM environment_specs"
            " WHERE remote_url <> '' AND deprecated = 0 ORDER BY remote_url, remote_protocol"
        )
        return [RemoteTarget(row["remote_url"], RemoteProtocol(row["remote_protocol"])) for row in rows]

    async def record_health(
        self, target: RemoteTarget, health: Health, detail: str, checked_at: datetime
    ) -> int:
        """Store a probe's result on every version served by the endpoint; return how many."""
        return await self.db.execute(
            "UPDATE environment_specs SET health = $3, health_detail = $4, health_checked_at_ms = $5"
            " WHERE remote_url = $1 AND remote_protocol = $2",
            target.url,
            target.protocol.value,
            health.value,
            detail,
            _to_ms(checked_at),
        )

    @staticmethod
    async def _get(tx: Executor, env_id: str, version: str) -> StoredEnvironment | None:
        row = await tx.fetchrow(f"{_SELECT} WHERE env_id = $1 AND version = $2", env_id, version)
        return _from_row(row) if row is not None else None
