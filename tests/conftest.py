"""Session-wide infrastructure for the suite: a real local broker and fresh PostgreSQL databases.

PostgreSQL, in this order: the server named by GAELP_TEST_POSTGRES_URL (an admin URL such as
postgresql://postgres@db:5432/postgres); the local one if it listens on 127.0.0.1:5432; otherwise
a throwaway server this session starts itself from Debian's postgresql binaries (initdb + pg_ctl
in a temporary folder on a free port, trust authentication, stopped at the end).
GAELP_TEST_POSTGRES_URL=start skips the first two and always starts the throwaway one.
"""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from gaelp.bus.local_broker import LocalBroker, free_port
from gaelp.config import GaelpSettings, load_settings

LOCAL_POSTGRES = ("127.0.0.1", 5432)
START_OWN_POSTGRES = "start"


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


def _listens(address: tuple[str, int]) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(address) == 0


def _postgres_bindir() -> Path:
    """The newest Debian cluster's binaries (/usr/lib/postgresql/N/bin), else initdb on PATH."""
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    initdb = versions[-1] if versions else shutil.which("initdb")
    if initdb is None:
        raise RuntimeError("no PostgreSQL binaries: install Debian's postgresql package (make test does)")
    return Path(initdb).parent


class ThrowawayPostgres:
    """A PostgreSQL server of this test session alone, in a temporary folder on a free port."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.port = free_port()
        self.bindir = _postgres_bindir()
        # initdb refuses to run as root; Debian's package brings the postgres system user for that.
        self.run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str) -> None:
        subprocess.run([*self.run_as, *command], check=True, capture_output=True, timeout=120)

    def start(self) -> ThrowawayPostgres:
        if self.run_as:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self._run(str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
                  "--auth=trust", "-E", "UTF8", "--no-sync")
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-o", options,
                  "-l", str(self.root / "postgres.log"), "-w", "-t", "120", "start")
        return self

    def stop(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop")


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """An admin URL (may CREATE DATABASE) of the PostgreSQL the suite uses; see the module doc."""
    named = os.environ.get("GAELP_TEST_POSTGRES_URL", "")
    if named and named != START_OWN_POSTGRES:
        yield named
        return
    if not named and _listens(LOCAL_POSTGRES):
        yield f"postgresql://postgres@{LOCAL_POSTGRES[0]}:{LOCAL_POSTGRES[1]}/postgres"
        return
    # Not under pytest's tmp folder: that one is private to this user, and the server may run as postgres.
    root = Path(tempfile.mkdtemp(prefix="gaelp-postgres-"))
    server = ThrowawayPostgres(root).start()
    try:
        yield server.admin_url
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


async def _create_database(admin_url: str, name: str) -> None:
    connection = await asyncpg.connect(admin_url)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


async def _drop_database(admin_url: str, name: str) -> None:
    connection = await asyncpg.connect(admin_url)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"gaelp_test_{uuid.uuid4().hex[:10]}"
    asyncio.run(_create_database(postgres_admin_url, name))
    base = postgres_admin_url.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    asyncio.run(_drop_database(postgres_admin_url, name))
