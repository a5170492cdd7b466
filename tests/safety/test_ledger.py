"""The ledger on its own: day boundaries in the campaign's time zone, expiry, migrations."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gaelp.db import Database
from gaelp.db.ledger import ReserveRequest, SpendLedger, SpendLimits, local_day, to_micros
from gaelp.db.ledger_schema import COMPONENT, MIGRATIONS

LIMITS = SpendLimits(
    episode_micros=to_micros(50),
    phase_total_micros=to_micros(500),
    max_bid_micros=to_micros(5),
    daily_ceiling_micros=to_micros(50),
    requires_entry_approval=False,
    budget_steps_apply=False,
)


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def request(campaign: str, dollars: float, episode: str = "ep") -> ReserveRequest:
    return ReserveRequest(campaign, 3, to_micros(dollars), uuid.uuid4().hex, episode, "run", 0)


@pytest.fixture
async def ledger(tmp_path: Path) -> SpendLedger:
    db = await Database.connect(f"sqlite:///{tmp_path / 'ledger.db'}")
    assert await db.migrate(COMPONENT, MIGRATIONS) == [1, 2, 3, 4, 5, 6]
    assert await db.migrate(COMPONENT, MIGRATIONS) == []
    spend = SpendLedger(db, reservation_ttl_s=7200)
    await spend.register_campaign("la", "America/Los_Angeles", to_micros(50), 0)
    await spend.register_campaign("utc", "UTC", to_micros(50), 0)
    yield spend
    await db.close()


def test_local_day_follows_the_zone() -> None:
    instant = at("2024-03-10T07:30:00")
    assert local_day(instant, "UTC") == "2024-03-10"
    assert local_day(instant, "America/Los_Angeles") == "2024-03-09"
    assert local_day(instant, "Pacific/Chatham") == "2024-03-10"


async def test_daily_limit_resets_at_local_midnight_not_utc(ledger: SpendLedger) -> None:
    before_la_midnight, after_la_midnight = at("2024-03-10T07:30:00"), at("2024-03-10T08:30:00")
    for campaign in ("la", "utc"):
        assert (await ledger.reserve(request(campaign, 40, "e1"), LIMITS, before_la_midnight)).granted
    # One UTC hour later: a new day in Los Angeles, still the same day in UTC.
    assert (await ledger.reserve(request("la", 40, "e2"), LIMITS, after_la_midnight)).granted
    refused = await ledger.reserve(request("utc", 40, "e2"), LIMITS, after_la_midnight)
    assert refused.refused_by == "daily_limit"
    usage = await ledger.usage("la", 3, "2024-03-09", LIMITS, after_la_midnight)
    assert usage.reserved_day_micros == to_micros(40)


async def test_expired_reservations_free_their_budget(ledger: SpendLedger) -> None:
    granted = await ledger.reserve(request("utc", 50), LIMITS, 1000.0)
    assert granted.granted and granted.reservation is not None
    assert (await ledger.reserve(request("utc", 1, "other"), LIMITS, 8199.0)).refused_by == "daily_limit"
    # Checked at reserve time, without waiting for the sweeper:
    assert (await ledger.reserve(request("utc", 50), LIMITS, 8201.0)).granted
    assert await ledger.expire_due(16000.0) == 1  # the second one; the first expired at reserve time
    expired = await ledger.reservation(granted.reservation.reservation_id)
    assert expired is not None and expired.state == "expired"
