"""Session-wide infrastructure for the suite: a real local broker and fresh PostgreSQL databases."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from gaelp.bus.local_broker import LocalBroker
from gaelp.config import GaelpSettings, load_settings

POSTGRES_ADMIN_URL = os.environ.get("GAELP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Tansu broker for the whole session, or the broker named by GAELP_KAFKA_BOOTSTRAP."""
    external = os.environ.get("GAELP_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with LocalBroker(log_path=log) as broker:
        yield broker.bootstrap


def _base_env_overrides(bootstrap: str) -> dict[str, object]:
    return {"kafka": {"bootstrap": bootstrap, "enable_idempotence": False, "acks": "1"}}


@pytest.fixture
def bus_settings(kafka_bootstrap: str, tmp_path: Path) -> GaelpSettings:
    """Settings pointing at the test broker, with storage under the test's tmp dir."""
    return load_settings(
        **_base_env_overrides(kafka_bootstrap),
        storage={
            "data_dir": str(tmp_path / "data"),
            "checkpoint_dir": str(tmp_path / "checkpoints"),
            "cache_dir": str(tmp_path / "cache"),
        },
        database={"url": f"sqlite:///{tmp_path / 'gaelp.db'}"},
    )


@pytest.fixture
def unique_name() -> str:
    """A name no other test uses (topics, consumer groups, run ids)."""
    return f"t{uuid.uuid4().hex[:12]}"


async def _create_database(name: str) -> None:
    connection = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


async def _drop_database(name: str) -> None:
    connection = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"gaelp_test_{uuid.uuid4().hex[:10]}"
    asyncio.run(_create_database(name))
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    asyncio.run(_drop_database(name))
