"""Concurrent requests decided together (group commit on PostgreSQL, one writer on SQLite): limits
still hold exactly, a key is decided once, one bad request fails alone, and on PostgreSQL the
running totals always equal the sum of the rows."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gaelp.db import Database
from gaelp.db.ledger import (
    IdempotencyConflict,
    ReserveRequest,
    SpendLedger,
    SpendLimits,
    to_micros,
)
from gaelp.db.ledger_schema import COMPONENT, MIGRATIONS

LIMITS = SpendLimits(
    episode_micros=to_micros(8),
    phase_total_micros=to_micros(1000),
    max_bid_micros=to_micros(5),
    daily_ceiling_micros=to_micros(50),
    requires_entry_approval=False,
    budget_steps_apply=False,
)
NOW = 1_000_000.0


def request(campaign: str, dollars: float, episode: str, key: str | None = None) -> ReserveRequest:
    return ReserveRequest(campaign, 3, to_micros(dollars), key or uuid.uuid4().hex, episode, "run", 0)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def ledger(ledger_url: str) -> AsyncIterator[SpendLedger]:
    db = await Database.connect(ledger_url)
    await db.migrate(COMPONENT, MIGRATIONS)
    spend = SpendLedger(db, reservation_ttl_s=60)
    for campaign in ("a", "b"):
        await spend.register_campaign(campaign, "UTC", to_micros(50), 0)
    yield spend
    await db.close()


async def test_concurrent_requests_fill_each_limit_exactly(ledger: SpendLedger) -> None:
    # 400 requests of $1 at once over two campaigns, 10 episodes each: every campaign gets exactly
    # its daily $50 and no episode more than its $8, whatever batches they fell into.
    requests = [request(campaign, 1, f"ep-{index % 10}") for index in range(200) for campaign in ("a", "b")]
    random.Random(3).shuffle(requests)
    outcomes = await asyncio.gather(*(ledger.reserve(asked, LIMITS, NOW) for asked in requests))
    granted: dict[str, int] = defaultdict(int)
    per_episode: dict[tuple[str, str], int] = defaultdict(int)
    for asked, outcome in zip(requests, outcomes, strict=True):
        if outcome.granted:
            granted[asked.campaign_id] += 1
            per_episode[(asked.campaign_id, asked.episode_id)] += 1
        else:
            assert outcome.refused_by in ("daily_limit", "episode_limit")
    assert granted == {"a": 50, "b": 50}
    assert max(per_episode.values()) <= 8
    for campaign in ("a", "b"):
        usage = await ledger.usage(campaign, 3, "1970-01-12", LIMITS, NOW)
        assert usage.reserved_day_micros == to_micros(50)


async def test_one_key_asked_twice_at_once_is_one_reservation(ledger: SpendLedger) -> None:
    asked = request("a", 2, "ep")
    others = [request("a", 1, f"ep-{index}") for index in range(10)]
    outcomes = await asyncio.gather(*(ledger.reserve(item, LIMITS, NOW) for item in [*others, asked, asked]))
    first, second = outcomes[-2:]
    assert first.granted and second.granted
    assert first.reservation is not None and second.reservation is not None
    assert first.reservation.reservation_id == second.reservation.reservation_id
    usage = await ledger.usage("a", 3, "1970-01-12", LIMITS, NOW)
    assert usage.reserved_day_micros == to_micros(12)


async def test_a_key_of_another_campaign_fails_alone(ledger: SpendLedger) -> None:
    taken = request("b", 1, "ep")
    assert (await ledger.reserve(taken, LIMITS, NOW)).granted
    reused = request("a", 1, "ep", key=taken.idempotency_key)
    batch = [request("a", 1, f"ep-{index}") for index in range(6)]
    results = await asyncio.gather(
        *(ledger.reserve(item, LIMITS, NOW) for item in [*batch[:3], reused, *batch[3:]]),
        return_exceptions=True,
    )
    assert isinstance(results[3], IdempotencyConflict)
    others = results[:3] + results[4:]
    assert all(not isinstance(result, BaseException) and result.granted for result in others)


async def test_running_totals_equal_the_rows(ledger: SpendLedger) -> None:
    if ledger.db.dialect != "postgresql":
        pytest.skip("running totals are kept on PostgreSQL")
    rng = random.Random(11)
    requests = [
        request(rng.choice("ab"), rng.randint(1, 300) / 100, f"ep-{rng.randint(0, 5)}") for _ in range(120)
    ]
    outcomes = await asyncio.gather(*(ledger.reserve(asked, LIMITS, NOW) for asked in requests))
    reservations = [outcome.reservation for outcome in outcomes if outcome.reservation is not None]
    assert len(reservations) > 20
    commits, releases, left_open = reservations[0::3], reservations[1::3], reservations[2::3]
    await asyncio.gather(
        *(
            ledger.commit(item.reservation_id, item.amount_micros // 2, "", NOW + 1, lambda _: LIMITS)
            for item in commits
        ),
        *(ledger.release(item.reservation_id, NOW + 1) for item in releases),
    )
    # Past the TTL: the open ones expire, and a commit after that is recorded all the same.
    assert await ledger.expire_due(NOW + 120) == len(left_open)
    late = left_open[0]
    await ledger.commit(late.reservation_id, late.amount_micros, "", NOW + 130, lambda _: LIMITS)
    assert (await ledger.reserve(request("a", 1, "ep-0"), LIMITS, NOW + 140)).granted
    totals = {
        (row["campaign_id"], row["scope"]): row["spend_micros"]
        for row in await ledger.db.fetch("SELECT * FROM safety_spend_totals WHERE spend_micros <> 0")
    }
    expected: dict[tuple[str, str], int] = defaultdict(int)
    for row in await ledger.db.fetch(
        "SELECT campaign_id, day, phase, episode_id,"
        " CASE WHEN state = 'committed' THEN committed_micros ELSE amount_micros END AS spend"
        " FROM safety_reservations WHERE state IN ('reserved', 'committed')"
    ):
        phase, episode = row["phase"], row["episode_id"]
        for scope in (f"day:{row['day']}", f"phase:{phase}", f"episode:{phase}:{episode}"):
            expected[(row["campaign_id"], scope)] += row["spend"]
    assert totals == {key: value for key, value in expected.items() if value}


async def test_postgresql_builds_the_limit_scopes_in_line(postgres_url: str) -> None:
    """The scopes the running totals are kept under are the ones the usage read asks for, and
    PostgreSQL inlines the function that builds them (a call of its own per row was most of the
    totals trigger's time)."""
    db = await Database.connect(postgres_url)
    try:
        await db.migrate(COMPONENT, MIGRATIONS)
        scopes = await db.fetchval("SELECT safety_spend_scopes($1, $2, $3)", "2026-12-07", 3, "ep-1")
        assert scopes == ["day:2026-12-07", "phase:3", "episode:3:ep-1"]
        plan = await db.fetch(
            "EXPLAIN (VERBOSE) SELECT safety_spend_scopes(r.day, r.phase, r.episode_id)"
            " FROM safety_reservations AS r")
        output = " ".join(row["QUERY PLAN"] for row in plan)
        assert "Output: ARRAY[" in output and "safety_spend_scopes" not in output
    finally:
        await db.close()
