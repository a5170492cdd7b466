"""The ledger under load on loopback, SQLite and PostgreSQL: the safety-policy service runs as its own
process, the clients in this one. A reservation is ReserveSpend then CommitSpend.

Per backend: `reserves_per_s`, 64 callers in a closed loop (each waits for its commit before the next
reserve), and `p99_ms_at_500`, the ReserveSpend p99 with reservations started at 500/s (open loop).
With them: the CPU time the service process and the clients spent per reservation (what bounds the
rate on a machine whose cores are shared), the load average around each measurement, and
`ledger_reserves_per_s`, the same closed loop against the ledger in-process, without gRPC (what the
database side alone sustains). Before each backend the same loops run against
benchmarks.safety_floor_server, which answers both calls at once: `grpc_floor` is what gRPC and
these clients allow on this machine at that moment, and `reserves_per_s_of_floor` the service's
share of it.

    .venv/bin/python -m benchmarks.safety_reserve --out benchmarks/results/safety_reserve_after.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import uvloop
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gaelp.bus.local_broker import free_port
from gaelp.config.sections.safety_policy import SafetyPolicySettings
from gaelp.db import Database
from gaelp.db.ledger import ReserveRequest, SpendLedger
from gaelp.db.ledger_schema import COMPONENT, MIGRATIONS
from gaelp.service.auth import token_hash
from gaelp.v1 import common_pb2, safety_pb2, safety_pb2_grpc
from safety_policy.servicer import REAL_MONEY_PHASES, spend_limits

OPERATOR_TOKEN = "benchmark-operator"
CAMPAIGNS = [f"bench-{index}" for index in range(16)]


def _section() -> dict[str, object]:
    """Limits high enough that the benchmark measures grants, not a ledger that is already full."""
    return {
        "operators": {"bench": token_hash(OPERATOR_TOKEN)},
        "real_testing": {"daily_limit_max": 1e6, "episode_limit": 1e6, "phase_total": 1e6, "max_bid": 5.0},
        "scaled": {"daily_limit_max": 1e6, "episode_limit": 1e6, "phase_total": 1e6, "max_bid": 5.0},
        "campaigns": [{"campaign_id": name, "daily_limit": 1e6} for name in CAMPAIGNS],
    }


_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_S


def _own_cpu_s() -> float:
    return time.process_time()


@contextlib.contextmanager
def _server(argv: list[str], env: dict[str, str], port: int) -> Iterator[tuple[str, int]]:
    """A server process on port: (target, pid), terminated at the end."""
    process = subprocess.Popen([sys.executable, *argv], env=env)
    try:
        yield f"127.0.0.1:{port}", process.pid
    finally:
        process.terminate()
        process.wait(timeout=20)


def service_process(database_url: str, workdir: Path) -> contextlib.AbstractContextManager[tuple[str, int]]:
    port = free_port()
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
    return _server(["-m", "safety_policy"], env, port)


async def _prepare(target: str) -> None:
    """Wait for SERVING, then approve phase-3 entry for every campaign."""
    metadata = (("authorization", f"Bearer {OPERATOR_TOKEN}"),)
    async with grpc.aio.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        # A start imports the whole settings tree (torch among it): minutes on a busy machine.
        deadline = time.monotonic() + 300.0
        while True:
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"the service at {target} did not serve within 300 s")
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


def _quantile_ms(latencies_s: list[float], q: int) -> float:
    return statistics.quantiles([latency * 1000 for latency in latencies_s], n=100)[q - 1]


def _reserve_request(rng: random.Random) -> safety_pb2.ReserveSpendRequest:
    return safety_pb2.ReserveSpendRequest(
        campaign_id=rng.choice(CAMPAIGNS),
        phase=rng.choice([common_pb2.PHASE_REAL_TESTING, common_pb2.PHASE_SCALED]),
        amount=rng.randint(50, 400) / 100,
        idempotency_key=uuid.uuid4().hex,
        episode_id=f"ep-{rng.randint(0, 7)}",
        run_id="bench",
        bid=rng.randint(10, 500) / 100,
    )


async def _reserve_and_commit(
    stub: safety_pb2_grpc.SafetyPolicyStub,
    rng: random.Random,
    reserve_s: list[float],
    both_s: list[float],
    errors: list[str],
) -> None:
    """One reservation: ReserveSpend, then CommitSpend of part of it (what a campaign step does).

    A call that fails (e.g. past its 10 s deadline on an overloaded ledger) counts with the time it
    took and is listed in `errors`: the quantiles never leave out the slowest answers."""
    request = _reserve_request(rng)
    started = time.perf_counter()
    try:
        reply = await stub.ReserveSpend(request, timeout=10.0)
    except grpc.aio.AioRpcError as error:
        reserve_s.append(time.perf_counter() - started)
        both_s.append(time.perf_counter() - started)
        errors.append(f"ReserveSpend {error.code().name}")
        return
    reserve_s.append(time.perf_counter() - started)
    if not reply.granted:
        raise RuntimeError(f"benchmark reservation refused: {reply.refused_by}")
    actual = rng.randint(0, round(request.amount * 100)) / 100
    try:
        await stub.CommitSpend(
            safety_pb2.CommitSpendRequest(reservation_id=reply.reservation_id, actual_amount=actual),
            timeout=10.0,
        )
    except grpc.aio.AioRpcError as error:
        errors.append(f"CommitSpend {error.code().name}")
    both_s.append(time.perf_counter() - started)


async def closed_loop(target: str, clients: int, operations: int) -> dict[str, object]:
    """`clients` callers, each on its own channel, each waiting for its commit before the next reserve."""
    reserve_s: list[float] = []
    both_s: list[float] = []
    errors: list[str] = []

    async def caller(seed: int) -> None:
        rng = random.Random(seed)
        async with grpc.aio.insecure_channel(target) as channel:
            stub = safety_pb2_grpc.SafetyPolicyStub(channel)
            await channel.channel_ready()
            for _ in range(operations):
                await _reserve_and_commit(stub, rng, reserve_s, both_s, errors)

    started = time.perf_counter()
    await asyncio.gather(*(caller(seed) for seed in range(clients)))
    elapsed = time.perf_counter() - started
    return {
        "clients": clients,
        "reservations": len(both_s),
        "reserves_per_s": round(len(both_s) / elapsed, 1),
        "reserve_p50_ms": round(_quantile_ms(reserve_s, 50), 2),
        "reserve_p99_ms": round(_quantile_ms(reserve_s, 99), 2),
        "reserve_commit_p99_ms": round(_quantile_ms(both_s, 99), 2),
        "errors": len(errors),
        "error_kinds": sorted(set(errors)),
    }


async def open_loop(target: str, rate_per_s: float, duration_s: float, channels: int) -> dict[str, object]:
    """Reservations started on a fixed schedule, whatever the answers' latency (no coordinated
    omission: a slow answer does not delay the next start)."""
    reserve_s: list[float] = []
    both_s: list[float] = []
    errors: list[str] = []
    opened = [grpc.aio.insecure_channel(target) for _ in range(channels)]
    try:
        for channel in opened:
            await channel.channel_ready()
        stubs = [safety_pb2_grpc.SafetyPolicyStub(channel) for channel in opened]
        rng = random.Random(7)
        count = int(rate_per_s * duration_s)
        loop = asyncio.get_running_loop()
        start = loop.time()
        in_flight = []
        late_starts = 0
        for index in range(count):
            due = start + index / rate_per_s
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.005:
                late_starts += 1
            in_flight.append(
                asyncio.create_task(
                    _reserve_and_commit(stubs[index % channels], rng, reserve_s, both_s, errors)
                )
            )
        await asyncio.gather(*in_flight)
        elapsed = loop.time() - start
    finally:
        for channel in opened:
            await channel.close()
    return {
        "rate_per_s": rate_per_s,
        "reservations": len(both_s),
        "achieved_per_s": round(len(both_s) / elapsed, 1),
        "starts_late_over_5ms": late_starts,
        "p50_ms": round(_quantile_ms(reserve_s, 50), 2),
        "p99_ms": round(_quantile_ms(reserve_s, 99), 2),
        "reserve_commit_p99_ms": round(_quantile_ms(both_s, 99), 2),
        "errors": len(errors),
        "error_kinds": sorted(set(errors)),
    }


def _load_average() -> float:
    return round(os.getloadavg()[0], 2)


async def ledger_closed_loop(database_url: str, clients: int, operations: int) -> dict[str, object]:
    """The closed loop against SpendLedger in this process: reserve then commit, no gRPC."""
    settings = SafetyPolicySettings(**{**_section(), "operators": {}})
    db = await Database.connect(database_url, pool_size=settings.database_pool_size)
    try:
        await db.migrate(COMPONENT, MIGRATIONS)
        ledger = SpendLedger(db, settings.reservation_ttl_s)
        limits = {phase: spend_limits(settings, phase) for phase in REAL_MONEY_PHASES}
        for name in CAMPAIGNS:
            await ledger.register_campaign(name, "UTC", 10**12, time.time())
            # What an approved enter_phase_3 request sets (the gRPC loop goes through Decide).
            await db.execute(
                "UPDATE safety_campaigns SET phase_entry_approved = 1 WHERE campaign_id = $1", name
            )
        latencies: list[float] = []

        async def caller(seed: int) -> None:
            rng = random.Random(seed)
            for _ in range(operations):
                asked = _reserve_request(rng)
                phase = common_pb2.Phase.ValueType(asked.phase)
                started = time.perf_counter()
                outcome = await ledger.reserve(
                    ReserveRequest(asked.campaign_id, phase, round(asked.amount * 1e6), asked.idempotency_key,
                                   asked.episode_id, asked.run_id, round(asked.bid * 1e6)),
                    limits[phase],
                    time.time(),
                )
                if outcome.reservation is None:
                    raise RuntimeError(f"benchmark reservation refused: {outcome.refused_by}")
                reservation, now = outcome.reservation, time.time()
                half = reservation.amount_micros // 2
                await ledger.commit(reservation.reservation_id, half, "", now, limits.__getitem__)
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(caller(seed) for seed in range(clients)))
        elapsed = time.perf_counter() - started
    finally:
        await db.close()
    return {
        "clients": clients,
        "reservations": len(latencies),
        "reserves_per_s": round(len(latencies) / elapsed, 1),
        "reserve_commit_p50_ms": round(_quantile_ms(latencies, 50), 2),
        "reserve_commit_p99_ms": round(_quantile_ms(latencies, 99), 2),
    }


async def _under_load(target: str, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    """The closed and the open loop against the server at target (process pid), after a warm-up."""
    await closed_loop(target, 8, 20)  # warm-up: connections, prepared statements
    load_before = _load_average()
    server_cpu, client_cpu = _cpu_s(pid), _own_cpu_s()
    closed = await closed_loop(target, args.clients, args.operations)
    count = args.clients * args.operations
    closed["service_cpu_ms_per_reservation"] = round((_cpu_s(pid) - server_cpu) / count * 1000, 3)
    closed["client_cpu_ms_per_reservation"] = round((_own_cpu_s() - client_cpu) / count * 1000, 3)
    closed["load_average_before_after"] = [load_before, _load_average()]
    opened = await open_loop(target, args.rate, args.duration, channels=8)
    opened["load_average_after"] = _load_average()
    return {
        "reserves_per_s": closed["reserves_per_s"],
        "p99_ms_at_500": opened["p99_ms"] if args.rate == 500 else None,
        "closed_loop": closed,
        "open_loop": opened,
    }


async def measure_floor(args: argparse.Namespace) -> dict[str, Any]:
    """The same loops against benchmarks.safety_floor_server: what gRPC alone allows here, now."""
    port = free_port()
    with _server(["-m", "benchmarks.safety_floor_server", "--port", str(port)], dict(os.environ), port) as (
            target, pid):
        async with grpc.aio.insecure_channel(target) as channel:
            await asyncio.wait_for(channel.channel_ready(), timeout=120.0)
        figures = await _under_load(target, pid, args)
    print(f"{'grpc floor':10s} {json.dumps(figures)}")
    return figures


async def measure(
    backend: str, database_url: str, args: argparse.Namespace, workdir: Path
) -> dict[str, Any]:
    """The service on this backend, next to the gRPC floor measured just before it."""
    floor = await measure_floor(args)
    with service_process(database_url, workdir) as (target, pid):
        await _prepare(target)
        figures = await _under_load(target, pid, args)
    figures["grpc_floor"] = floor
    figures["reserves_per_s_of_floor"] = round(figures["reserves_per_s"] / floor["reserves_per_s"], 3)
    print(f"{backend:10s} {json.dumps(figures)}")
    return figures


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--operations", type=int, default=60, help="reservations per client (closed loop)")
    parser.add_argument("--rate", type=float, default=500.0, help="reservations per second (open loop)")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of the open loop")
    parser.add_argument("--postgres-admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument("--machine", default="", help="what ran it (recorded in the JSON)")
    args = parser.parse_args()
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for backend in args.backends.split(","):
            if backend == "sqlite":
                figures = await measure(backend, f"sqlite:///{workdir / 'ledger.db'}", args, workdir)
                ledger_only = await ledger_closed_loop(
                    f"sqlite:///{workdir / 'ledger-only.db'}", args.clients, args.operations
                )
            else:
                async with postgres_database(args.postgres_admin_url) as url:
                    figures = await measure(backend, url, args, workdir)
                async with postgres_database(args.postgres_admin_url) as url:
                    ledger_only = await ledger_closed_loop(url, args.clients, args.operations)
            figures["ledger_reserves_per_s"] = ledger_only["reserves_per_s"]
            figures["ledger_only"] = ledger_only
            print(f"{backend:10s} ledger only {json.dumps(ledger_only)}")
            results[backend] = figures
    if args.out is not None:
        report = {
            "benchmark": "benchmarks.safety_reserve",
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": args.machine or platform.platform(),
            "cpus": os.cpu_count(),
            "settings": {key: value for key, value in vars(args).items() if key not in ("out", "machine")},
            "backends": results,
        }
        args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")


if __name__ == "__main__":
    # The clients run on uvloop, as the service does: on a machine they share with the server, a
    # cheaper load generator leaves more of the cores to what is measured (floor and service alike).
    uvloop.run(main())
