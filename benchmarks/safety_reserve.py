"""ReserveSpend latency (p50/p99) and throughput under concurrent load on loopback, SQLite and
PostgreSQL: the safety-policy service runs as its own process, the clients in this one.

    .venv/bin/python -m benchmarks.safety_reserve --clients 64 --operations 40
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gaelp.safety.loadgen import LoadRecord, run_clients
from gaelp.service.auth import token_hash
from gaelp.v1 import common_pb2, safety_pb2, safety_pb2_grpc

OPERATOR_TOKEN = "benchmark-operator"
CAMPAIGNS = [f"bench-{index}" for index in range(16)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _section() -> dict[str, object]:
    """Limits high enough that the benchmark measures grants, not a ledger that is already full."""
    return {
        "operators": {"bench": token_hash(OPERATOR_TOKEN)},
        "real_testing": {"daily_limit_max": 1e6, "episode_limit": 1e6, "phase_total": 1e6, "max_bid": 5.0},
        "scaled": {"daily_limit_max": 1e6, "episode_limit": 1e6, "phase_total": 1e6, "max_bid": 5.0},
        "campaigns": [{"campaign_id": name, "daily_limit": 1e6} for name in CAMPAIGNS],
    }


@contextlib.contextmanager
def service_process(database_url: str, workdir: Path) -> Iterator[str]:
    port = _free_port()
    config = workdir / f"safety-{port}.yaml"
    config.write_text(yaml.safe_dump({"safety_policy": _section()}))
    env = {
        **os.environ,
        "GAELP_CONFIG": str(config),
        "GAELP_DATABASE_URL": database_url,
        "GAELP_GRPC_PORT": str(port),
        "GAELP_KAFKA_BOOTSTRAP": "",
        "GAELP_TELEMETRY_LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen([sys.executable, "-m", "safety_policy"], env=env)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=20)


async def _prepare(target: str) -> None:
    """Wait for SERVING, then approve phase-3 entry for every campaign."""
    metadata = (("authorization", f"Bearer {OPERATOR_TOKEN}"),)
    async with grpc.aio.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for _ in range(300):
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    break
            await asyncio.sleep(0.1)
        stub = safety_pb2_grpc.SafetyPolicyStub(channel)
        for name in CAMPAIGNS:
            asked = await stub.RequestApproval(
                safety_pb2.RequestApprovalRequest(
                    approval=safety_pb2.ApprovalRequest(
                        kind="enter_phase_3",
                        campaign_id=name,
                        justification="benchmark",
                        phase=common_pb2.PHASE_REAL_TESTING,
                    )
                )
            )
            await stub.Decide(
                safety_pb2.DecideRequest(approval_id=asked.approval.approval_id, approve=True),
                metadata=metadata,
            )


@contextlib.asynccontextmanager
async def postgres_database(admin_url: str) -> AsyncIterator[str]:
    name = f"gaelp_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield f"{admin_url.rsplit('/', 1)[0]}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def measure(backend: str, database_url: str, clients: int, operations: int, workdir: Path) -> None:
    with service_process(database_url, workdir) as target:
        await _prepare(target)
        record = LoadRecord()
        started = time.perf_counter()
        await run_clients(target, CAMPAIGNS, clients, operations, record)
        elapsed = time.perf_counter() - started
    latencies_ms = sorted(latency * 1000 for latency in record.reserve_latencies_s)
    quantiles = statistics.quantiles(latencies_ms, n=100)
    refused = sum(record.refused_by.values())
    print(
        f"{backend:10s} clients={clients} reserves={len(latencies_ms)} granted={len(record.granted)}"
        f" refused={refused} commits={len(record.committed)}"
        f" reserve_p50_ms={quantiles[49]:.2f} reserve_p99_ms={quantiles[98]:.2f}"
        f" reserves_per_s={len(latencies_ms) / elapsed:.0f} (wall {elapsed:.2f}s, incl. commits/releases)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--operations", type=int, default=40, help="reservations per client")
    parser.add_argument("--postgres-admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for backend in args.backends.split(","):
            if backend == "sqlite":
                await measure(
                    backend, f"sqlite:///{workdir / 'ledger.db'}", args.clients, args.operations, workdir
                )
            else:
                async with postgres_database(args.postgres_admin_url) as url:
                    await measure(backend, url, args.clients, args.operations, workdir)


if __name__ == "__main__":
    asyncio.run(main())
