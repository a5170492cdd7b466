"""A load generator for the safety-policy ledger and the invariant check run after it.

Used by the load/crash tests and benchmarks/safety_reserve.py. Each client retries a call that
failed for transport reasons with the SAME request (same idempotency key, same reservation id),
which is what a real client does after the service crashed.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import grpc

from gaelp.db import Database
from gaelp.db.ledger import to_micros
from gaelp.v1 import common_pb2, safety_pb2, safety_pb2_grpc

RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 300),
]


@dataclass
class LoadRecord:
    """What the clients were told: the ledger must agree with every acknowledgement."""

    granted: dict[str, str] = field(default_factory=dict)  # idempotency key -> reservation id
    granted_requests: dict[str, safety_pb2.ReserveSpendRequest] = field(default_factory=dict)
    committed: dict[str, int] = field(default_factory=dict)  # reservation id -> micros
    refused_by: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    refused_requests: dict[str, safety_pb2.ReserveSpendRequest] = field(default_factory=dict)
    reserve_latencies_s: list[float] = field(default_factory=list)
    retries: int = 0


async def call(method: Any, request: Any, record: LoadRecord, give_up_at: float) -> Any:
    while True:
        try:
            return await method(request, timeout=5.0)
        except grpc.aio.AioRpcError as error:
            if error.code() not in RETRYABLE or time.monotonic() > give_up_at:
                raise
            record.retries += 1
            await asyncio.sleep(0.05)


async def client(
    target: str,
    campaigns: list[str],
    operations: int,
    record: LoadRecord,
    seed: int,
    give_up_s: float = 60.0,
) -> None:
    rng = random.Random(seed)
    give_up_at = time.monotonic() + give_up_s
    async with grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS) as channel:
        stub = safety_pb2_grpc.SafetyPolicyStub(channel)
        for _ in range(operations):
            phase = rng.choice([common_pb2.PHASE_REAL_TESTING, common_pb2.PHASE_SCALED])
            request = safety_pb2.ReserveSpendRequest(
                campaign_id=rng.choice(campaigns),
                phase=phase,
                amount=rng.randint(50, 400) / 100,
                idempotency_key=uuid.uuid4().hex,
                episode_id=f"ep-{rng.randint(0, 7)}",
                run_id="load",
                bid=rng.randint(10, 500) / 100,
            )
            started = time.perf_counter()
            reply = await call(stub.ReserveSpend, request, record, give_up_at)
            record.reserve_latencies_s.append(time.perf_counter() - started)
            if not reply.granted:
                record.refused_by[reply.refused_by] += 1
                record.refused_requests[request.idempotency_key] = request
                continue
            record.granted[request.idempotency_key] = reply.reservation_id
            record.granted_requests[request.idempotency_key] = request
            choice = rng.random()
            if choice < 0.7:
                actual = rng.randint(0, round(request.amount * 100)) / 100
                commit = safety_pb2.CommitSpendRequest(
                    reservation_id=reply.reservation_id, actual_amount=actual
                )
                done = await call(stub.CommitSpend, commit, record, give_up_at)
                record.committed[reply.reservation_id] = to_micros(done.committed)
            elif choice < 0.9:
                release = safety_pb2.ReleaseSpendRequest(reservation_id=reply.reservation_id)
                await call(stub.ReleaseSpend, release, record, give_up_at)
            # else: left open, the sweeper or the next reservation expires it


async def run_clients(
    target: str, campaigns: list[str], clients: int, operations: int, record: LoadRecord
) -> None:
    await asyncio.gather(*(client(target, campaigns, operations, record, seed) for seed in range(clients)))


@dataclass(frozen=True)
class LimitsMicros:
    daily: dict[str, int]  # per campaign (phase 3 base; the load approves no budget steps)
    episode: dict[int, int]  # per phase
    phase_total: dict[int, int]  # per phase


@dataclass(frozen=True)
class Breach:
    limit: str  # daily_limit, episode_limit or phase_total: the ledger's rule names
    campaign_id: str
    scope: tuple[object, ...]
    used_micros: int


async def ledger_breaches(database_url: str, limits: LimitsMicros) -> list[str]:
    """Every (campaign, day / episode / phase) whose committed + outstanding passes its limit.

    Outstanding counts every row still 'reserved', even past expiry: the strictest reading."""
    return [
        f"{breach.limit} {breach.scope}: {breach.used_micros}"
        for breach in await ledger_breach_list(database_url, limits)
    ]


async def ledger_breach_list(database_url: str, limits: LimitsMicros) -> list[Breach]:
    """ledger_breaches as records, to match them with the violations the ledger raised."""
    db = await Database.connect(database_url)
    try:
        rows = await db.fetch(
            "SELECT campaign_id, phase, episode_id, day,"
            " CASE WHEN state = 'committed' THEN committed_micros ELSE amount_micros END AS spend"
            " FROM safety_reservations WHERE state IN ('reserved', 'committed')"
        )
    finally:
        await db.close()
    day: dict[tuple[str, str], int] = defaultdict(int)
    episode: dict[tuple[str, int, str], int] = defaultdict(int)
    phase: dict[tuple[str, int], int] = defaultdict(int)
    for row in rows:
        day[(row["campaign_id"], row["day"])] += row["spend"]
        episode[(row["campaign_id"], row["phase"], row["episode_id"])] += row["spend"]
        phase[(row["campaign_id"], row["phase"])] += row["spend"]
    breaches = [
        Breach("daily_limit", key[0], key, used) for key, used in day.items() if used > limits.daily[key[0]]
    ]
    breaches += [
        Breach("episode_limit", key[0], key, used)
        for key, used in episode.items()
        if used > limits.episode[key[1]]
    ]
    breaches += [
        Breach("phase_total", key[0], key, used)
        for key, used in phase.items()
        if used > limits.phase_total[key[1]]
    ]
    return breaches


async def ledger_rows(database_url: str) -> list[dict[str, Any]]:
    db = await Database.connect(database_url)
    try:
        return await db.fetch(
            "SELECT reservation_id, idempotency_key, state, committed_micros FROM safety_reservations"
            " ORDER BY reservation_id"
        )
    finally:
        await db.close()


async def ledger_violations(database_url: str) -> list[dict[str, Any]]:
    """The violation outbox: id, campaign, rule and action of every violation the ledger raised."""
    db = await Database.connect(database_url)
    try:
        return await db.fetch(
            "SELECT violation_id, campaign_id, rule, action_taken FROM safety_violation_outbox"
            " ORDER BY violation_id"
        )
    finally:
        await db.close()
