"""The registry's rules over the store: immutable versions, version resolution, listing, deprecation.

Both the gRPC servicer and the start-up registration of configs/environments go through here, so
a spec file is held to exactly the rules a remote client is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from environment_registry.specs import ValidSpec
from environment_registry.versions import SemVer, is_exact_version, parse_constraint, parse_version
from gaelp.db.registry import RegistryStore, StoredEnvironment, VersionConflict
from gaelp.service import AlreadyExists, InvalidArgument, NotFound

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _newest_first(specs: list[StoredEnvironment]) -> list[StoredEnvironment]:
    return sorted(specs, key=lambda stored: parse_version(stored.version), reverse=True)


class EnvironmentCatalogue:
    def __init__(self, store: RegistryStore, clock: Clock = _utc_now) -> None:
        self.store = store
        self.clock = clock
        # Set when a remote environment is registered, so its first probe need not wait an interval.
        self.remote_registered = asyncio.Event()

    async def register(self, spec: ValidSpec) -> tuple[StoredEnvironment, bool]:
        """Register a new version -> (spec, True); the identical spec again -> (spec, False)."""
        try:
            stored, created = await self.store.register(spec.env_id, spec.version, spec.content, self.clock())
        except VersionConflict as conflict:
            raise AlreadyExists(str(conflict)) from conflict
        if created and stored.content.remote_url:
            self.remote_registered.set()
        return stored, created

    async def resolve(self, env_id: str, requested: str) -> StoredEnvironment:
        """An exact version (deprecated or not), else the highest non-deprecated version matching
        the constraint; empty means any release."""
        if is_exact_version(requested):
            exact = await self.store.get(env_id, str(self._version(requested)))  # refuses +build
            if exact is None:
                known = await self._known(env_id)
                raise NotFound(f"environment {env_id!r} has no version {requested}{known}")
            return exact
        try:
            constraint = parse_constraint(requested)
        except ValueError as error:
            raise InvalidArgument(f"version: {error}") from error
        versions = _newest_first(await self.store.versions(env_id))
        if not versions:
            raise NotFound(f"no environment {env_id!r} is registered")
        matching = [stored for stored in versions if constraint.allows(parse_version(stored.version))]
        for stored in matching:
            if not stored.deprecated:
                return stored
        wanted = f"version {requested!r}" if requested else "a release version"
        deprecated = f" (deprecated matches: {', '.join(s.version for s in matching)})" if matching else ""
        raise NotFound(
            f"environment {env_id!r} has no non-deprecated {wanted}{deprecated}{await self._known(env_id)}"
        )

    async def list(
        self, *, phase: int | None, tag: str | None, include_deprecated: bool, latest_only: bool
    ) -> list[StoredEnvironment]:
        """Ordered by id, then newest version first; latest_only keeps each id's newest release."""
        found = await self.store.list(phase=phase, tag=tag, include_deprecated=include_deprecated)
        by_id: dict[str, list[StoredEnvironment]] = {}
        for stored in found:
            by_id.setdefault(stored.env_id, []).append(stored)
        listed: list[StoredEnvironment] = []
        for env_id in sorted(by_id):
            versions = _newest_first(by_id[env_id])
            if latest_only:
                releases = [s for s in versions if not parse_version(s.version).prerelease]
                versions = (releases or versions)[:1]
            listed.extend(versions)
        return listed

    async def deprecate(self, env_id: str, version: str, reason: str) -> StoredEnvironment:
        stored = await self.store.deprecate(env_id, str(self._version(version)), reason, self.clock())
        if stored is None:
            raise NotFound(f"environment {env_id!r} has no version {version}{await self._known(env_id)}")
        return stored

    @staticmethod
    def _version(text: str) -> SemVer:
        try:
            return parse_version(text)
        except ValueError as error:
            raise InvalidArgument(f"version: {error}") from error

    async def _known(self, env_id: str) -> str:
        versions = _newest_first(await self.store.versions(env_id))
        if not versions:
            return f"; no environment {env_id!r} is registered"
        return f"; registered versions: {', '.join(stored.version for stored in versions)}"
