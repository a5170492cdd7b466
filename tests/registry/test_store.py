"""The registry's storage on SQLite and PostgreSQL: immutability, filters, deprecation, health rows."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from gaelp.db.registry import (
    EnvironmentContent,
    Health,
    RegistryStore,
    RemoteProtocol,
    RemoteTarget,
    VersionConflict,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def content(**changes: object) -> EnvironmentContent:
    fields: dict[str, object] = {
        "entry_point": "gaelp.sim:make_ad_vector_env",
        "config_json": '{"level":0}',
        "phases": (1,),
        "tags": ("simulator", "vectorized"),
        "remote_url": "",
        "remote_protocol": RemoteProtocol.NONE,
        "description": "the simulator",
    }
    fields.update(changes)
    return EnvironmentContent(**fields)  # type: ignore[arg-type]


async def test_a_version_is_immutable_and_identical_reregistration_is_idempotent(
    store: RegistryStore,
) -> None:
    stored, created = await store.register("sim", "1.0.0", content(), NOW)
    assert created
    assert stored.content == content()
    assert stored.registered_at == NOW
    assert (stored.health, stored.deprecated) == (Health.NOT_PROBED, False)

    again, created_again = await store.register("sim", "1.0.0", content(), NOW + timedelta(hours=1))
    assert not created_again
    assert again == stored  # the first registration's record, timestamps included

    with pytest.raises(VersionConflict) as conflict:
        await store.register("sim", "1.0.0", content(config_json='{"level":1}', tags=("simulator",)), NOW)
    assert conflict.value.differing == ["config_json", "tags"]
    assert "immutable" in str(conflict.value)
    assert (await store.get("sim", "1.0.0")) == stored

    _, created_next = await store.register("sim", "1.1.0", content(config_json='{"level":1}'), NOW)
    assert created_next
    assert sorted(s.version for s in await store.versions("sim")) == ["1.0.0", "1.1.0"]


async def test_concurrent_registrations_of_one_version_admit_exactly_one_spec(store: RegistryStore) -> None:
    candidates = [content(config_json=f'{{"seed":{seed}}}') for seed in range(6)]
    outcomes = await asyncio.gather(
        *(store.register("race", "1.0.0", candidate, NOW) for candidate in candidates), return_exceptions=True
    )
    winners = [outcome for outcome in outcomes if not isinstance(outcome, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(outcome, VersionConflict) for outcome in outcomes if outcome not in winners)
    stored = await store.get("race", "1.0.0")
    assert stored is not None and stored == winners[0][0]


async def test_list_filters_by_phase_tag_and_deprecation(store: RegistryStore) -> None:
    await store.register("sim", "1.0.0", content(), NOW)
    await store.register("hist", "1.0.0", content(phases=(2,), tags=("ope", "offline")), NOW)
    await store.register("sandbox", "1.0.0", content(phases=(3, 4), tags=("mcp",)), NOW)
    await store.register("sandbox", "0.9.0", content(phases=(3,), tags=("mcp",)), NOW)

    def keys(specs: list) -> set[tuple[str, str]]:
        return {(s.env_id, s.version) for s in specs}

    assert len(await store.list()) == 4
    assert keys(await store.list(phase=3)) == {("sandbox", "1.0.0"), ("sandbox", "0.9.0")}
    assert keys(await store.list(phase=4)) == {("sandbox", "1.0.0")}
    assert keys(await store.list(tag="ope")) == {("hist", "1.0.0")}
    assert keys(await store.list(phase=2, tag="mcp")) == set()

    deprecated = await store.deprecate("sandbox", "0.9.0", "superseded by 1.0.0", NOW)
    assert deprecated is not None and deprecated.deprecated
    assert deprecated.deprecation_reason == "superseded by 1.0.0"
    assert keys(await store.list(phase=3)) == {("sandbox", "1.0.0")}
    assert keys(await store.list(phase=3, include_deprecated=True)) == {
        ("sandbox", "1.0.0"),
        ("sandbox", "0.9.0"),
    }

    # Deprecating again keeps the first reason; an unknown version is None.
    again = await store.deprecate("sandbox", "0.9.0", "another reason", NOW)
    assert again is not None and again.deprecation_reason == "superseded by 1.0.0"
    assert await store.deprecate("sandbox", "7.0.0", "no such version", NOW) is None


async def test_health_is_recorded_on_every_version_served_by_an_endpoint(store: RegistryStore) -> None:
    url = "http://sandbox:8765/mcp"
    remote = content(remote_url=url, remote_protocol=RemoteProtocol.MCP, phases=(3,))
    first, _ = await store.register("sandbox", "1.0.0", remote, NOW)
    await store.register("sandbox", "1.1.0", remote, NOW)
    other = content(remote_url="http://other/", remote_protocol=RemoteProtocol.HTTP)
    await store.register("other", "1.0.0", other, NOW)
    await store.register("sim", "1.0.0", content(), NOW)
    assert (first.health, first.health_detail) == (Health.UNKNOWN, "not probed yet")

    target = RemoteTarget(url, RemoteProtocol.MCP)
    assert await store.remote_targets() == [RemoteTarget("http://other/", RemoteProtocol.HTTP), target]
    checked = NOW + timedelta(seconds=30)
    assert await store.record_health(target, Health.UNHEALTHY, "no answer within 2 s", checked) == 2
    for version in ("1.0.0", "1.1.0"):
        stored = await store.get("sandbox", version)
        assert stored is not None
        assert (stored.health, stored.health_detail, stored.health_checked_at) == (
            Health.UNHEALTHY,
            "no answer within 2 s",
            checked,
        )
    untouched = await store.get("sim", "1.0.0")
    assert untouched is not None and untouched.health is Health.NOT_PROBED

    # Deprecated versions are not probed any more.
    await store.deprecate("other", "1.0.0", "gone", NOW)
    assert await store.remote_targets() == [target]


async def test_migrations_apply_once(store: RegistryStore) -> None:
    await store.register("sim", "1.0.0", content(), NOW)
    reopened = await RegistryStore.open(store.db)
    assert await reopened.get("sim", "1.0.0") is not None
