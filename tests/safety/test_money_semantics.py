"""Money crash semantics on SQLite and PostgreSQL: spend on a closed reservation is recorded and
reported, every answer and every violation is idempotent, and amounts are whole micro-dollars."""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from gaelp.db import Database
from gaelp.db.ledger import ReserveRequest, SpendLedger, SpendLimits, format_dollars, to_micros
from gaelp.db.ledger_approvals import ApprovalStore
from gaelp.db.ledger_outbox import ViolationRecord, record_violation, unpublished_violations
from gaelp.db.ledger_schema import COMPONENT, MIGRATIONS
from gaelp.v1 import common_pb2, safety_pb2

LIMITS = SpendLimits(
    episode_micros=to_micros(10),
    phase_total_micros=to_micros(500),
    max_bid_micros=to_micros(5),
    daily_ceiling_micros=to_micros(50),
    requires_entry_approval=False,
    budget_steps_apply=False,
)
TTL_S = 60.0
REAL = common_pb2.PHASE_REAL_TESTING


def limits_of(phase: int) -> SpendLimits:
    return LIMITS


def request(dollars: float, episode: str = "ep", key: str | None = None, bid: float = 1.0) -> ReserveRequest:
    return ReserveRequest(
        "camp", 3, to_micros(dollars), key or uuid.uuid4().hex, episode, "run", to_micros(bid)
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def ledger(ledger_url: str) -> AsyncIterator[SpendLedger]:
    db = await Database.connect(ledger_url)
    await db.migrate(COMPONENT, MIGRATIONS)
    spend = SpendLedger(db, reservation_ttl_s=TTL_S)
    await spend.register_campaign("camp", "UTC", to_micros(50), 0)
    yield spend
    await db.close()


async def test_commit_after_expiry_is_recorded_and_reports_the_passed_limit(ledger: SpendLedger) -> None:
    first = await ledger.reserve(request(8), LIMITS, 1000.0)
    assert first.granted and first.reservation is not None
    # Expired; its headroom goes to another reservation of the same episode.
    second = await ledger.reserve(request(8), LIMITS, 1000.0 + TTL_S + 1)
    assert second.granted
    # The platform did spend on the first one: recorded, and the episode limit (10) is passed.
    late_at = 1000.0 + TTL_S + 2
    outcome = await ledger.commit(first.reservation.reservation_id, to_micros(5), "", late_at, limits_of)
    assert (outcome.committed_micros, outcome.released_micros) == (to_micros(5), to_micros(3))
    stored = await ledger.reservation(first.reservation.reservation_id)
    assert stored is not None and (stored.state, stored.committed_micros) == ("committed", to_micros(5))
    # The retry after a crash: same answer, no second violation.
    again = await ledger.commit(first.reservation.reservation_id, to_micros(5), "", late_at + 5, limits_of)
    assert again == outcome
    over = [v for v in await unpublished_violations(ledger.db) if v.action_taken == "recorded_over_limit"]
    assert [(v.rule, v.severity, v.amount_micros) for v in over] == [
        ("episode_limit", "critical", to_micros(5))
    ]
    assert "passes the episode_limit by 3" in over[0].detail


async def test_commit_after_release_within_limits_raises_no_violation(ledger: SpendLedger) -> None:
    granted = await ledger.reserve(request(4), LIMITS, 1000.0)
    assert granted.reservation is not None
    reservation_id = granted.reservation.reservation_id
    assert await ledger.release(reservation_id, 1001.0) == to_micros(4)
    assert await ledger.release(reservation_id, 1002.0) == 0
    outcome = await ledger.commit(reservation_id, to_micros(2), "", 1003.0, limits_of)
    assert outcome.committed_micros == to_micros(2)
    assert [v for v in await unpublished_violations(ledger.db) if v.action_taken != "refused"] == []
    usage = await ledger.usage("camp", 3, "1970-01-01", LIMITS, 1004.0)
    assert (usage.committed_day_micros, usage.reserved_day_micros) == (to_micros(2), 0)


async def test_a_retried_refusal_gets_the_same_answer_and_one_violation(ledger: SpendLedger) -> None:
    assert (await ledger.reserve(request(9, "full"), LIMITS, 1000.0)).granted
    refused_request = request(2, "full")
    refused = await ledger.reserve(refused_request, LIMITS, 1001.0)
    assert (refused.granted, refused.refused_by) == (False, "episode_limit")
    assert refused.reason == "reserving 2 would pass the episode_limit; 1 left"
    assert refused.remaining_micros == to_micros(1)
    # Even once the headroom is back, the same key gets the same refusal, and no new violation.
    for now in (1002.0, 1000.0 + TTL_S + 5):
        assert await ledger.reserve(refused_request, LIMITS, now) == refused
    violations = await unpublished_violations(ledger.db)
    assert [(v.rule, v.action_taken) for v in violations] == [("episode_limit", "refused")]
    assert violations[0].violation_id == f"refused:{refused_request.idempotency_key}"
    with pytest.raises(Exception, match="different reservation"):
        await ledger.reserve(
            ReserveRequest("camp", 3, to_micros(3), refused_request.idempotency_key, "full", "run", 0),
            LIMITS,
            1003.0,
        )


async def test_refusal_reasons_read_the_same_on_both_backends(ledger: SpendLedger) -> None:
    bid = await ledger.reserve(request(1, bid=7.25), LIMITS, 1000.0)
    assert (bid.refused_by, bid.reason) == ("max_bid", "bid 7.25 exceeds the maximum bid 5")
    assert format_dollars(1) == "0.000001" and format_dollars(to_micros(20)) == "20"


async def test_an_emergency_stop_refusal_is_recorded_but_not_critical(ledger: SpendLedger) -> None:
    # A critical violation demotes the run; the operator's stop is not the agent's misbehaviour.
    approvals = ApprovalStore(ledger.db)
    await approvals.emergency_stop("alice", "drill", 1000.0)
    stopped_request = request(1)
    refused = await ledger.reserve(stopped_request, LIMITS, 1001.0)
    assert (refused.granted, refused.refused_by) == (False, "emergency_stop")
    assert refused.reason == "emergency stop in force: drill"
    assert await ledger.reserve(stopped_request, LIMITS, 1002.0) == refused
    refusals = [v for v in await unpublished_violations(ledger.db) if v.action_taken == "refused"]
    assert [(v.violation_id, v.rule, v.severity, v.amount_micros, v.run_id) for v in refusals] == [
        (f"refused:{stopped_request.idempotency_key}", "emergency_stop", "info", to_micros(1), "run")
    ]
    usage = await ledger.usage("camp", 3, "1970-01-01", LIMITS, 1003.0)
    assert usage.emergency_stopped and (usage.committed_day_micros, usage.reserved_day_micros) == (0, 0)


async def test_migration_4_makes_unpublished_stop_refusals_info_and_keeps_the_rest(ledger_url: str) -> None:
    db = await Database.connect(ledger_url)
    try:
        await db.migrate(COMPONENT, MIGRATIONS[:3])
        async with db.transaction() as tx:
            for violation_id, rule, published in [
                ("stop-queued", "emergency_stop", 0), ("stop-sent", "emergency_stop", 1),
                ("limit-queued", "episode_limit", 0),
            ]:
                await record_violation(tx, ViolationRecord(
                    "camp", "run", rule, "critical", 1, 3, "refused", "", 1.0, violation_id
                ))
                await tx.execute(
                    "UPDATE safety_violation_outbox SET published = $1 WHERE violation_id = $2",
                    published, violation_id,
                )
        assert await db.migrate(COMPONENT, MIGRATIONS[:4]) == [4]
        rows = await db.fetch("SELECT violation_id, severity FROM safety_violation_outbox ORDER BY 1")
        assert [(row["violation_id"], row["severity"]) for row in rows] == [
            ("limit-queued", "critical"), ("stop-queued", "info"), ("stop-sent", "critical")
        ]
    finally:
        await db.close()


@pytest.mark.parametrize("amount", [1e-7, 4.9e-7, 5e-7, 1.0000005, 0.0, -0.0])
async def test_amounts_below_or_between_micro_dollars_are_invalid(
    ledger_url: str, tools: Any, amount: float
) -> None:
    async with tools.in_process_safety(ledger_url) as safety:
        await tools.enter_phase_3(safety.stub, "camp-a")
        bad = safety_pb2.ReserveSpendRequest(
            campaign_id="camp-a",
            phase=REAL,
            amount=amount,
            idempotency_key=uuid.uuid4().hex,
            episode_id="ep",
            run_id="run",
            bid=1.0,
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await safety.stub.ReserveSpend(bad)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "micro-dollar" in (caught.value.details() or "")
        # The smallest amount there is, one micro-dollar, is granted; a commit between 0 and one
        # micro-dollar is refused like the reserve, and nothing was queued for the bad requests.
        smallest = await safety.stub.ReserveSpend(
            safety_pb2.ReserveSpendRequest(
                campaign_id="camp-a",
                phase=REAL,
                amount=0.000001,
                idempotency_key=uuid.uuid4().hex,
                episode_id="ep",
                run_id="run",
                bid=0.0,
            )
        )
        assert smallest.granted
        with pytest.raises(grpc.aio.AioRpcError) as commit_error:
            await safety.stub.CommitSpend(
                safety_pb2.CommitSpendRequest(reservation_id=smallest.reservation_id, actual_amount=3e-7)
            )
        assert commit_error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert await unpublished_violations(safety.db) == []


@pytest.mark.parametrize("amount", [math.nan, math.inf, -math.inf, 1e308, -1e-9])
async def test_non_finite_and_out_of_range_amounts_are_invalid_with_short_messages(
    ledger_url: str, tools: Any, amount: float
) -> None:
    async with tools.in_process_safety(ledger_url) as safety:
        for call in (
            safety.stub.ReserveSpend(
                safety_pb2.ReserveSpendRequest(
                    campaign_id="camp-a",
                    phase=REAL,
                    amount=amount,
                    idempotency_key="k" * 256,
                    episode_id="ep",
                    run_id="run",
                )
            ),
            safety.stub.CommitSpend(safety_pb2.CommitSpendRequest(reservation_id="r", actual_amount=amount)),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert len(caught.value.details() or "") < 120


async def test_commit_above_the_reservation_is_reported_once_however_often_retried(
    ledger_url: str, tools: Any
) -> None:
    async with tools.in_process_safety(ledger_url) as safety:
        await tools.enter_phase_3(safety.stub, "camp-a")
        granted = await safety.stub.ReserveSpend(
            safety_pb2.ReserveSpendRequest(
                campaign_id="camp-a",
                phase=REAL,
                amount=2.0,
                idempotency_key=uuid.uuid4().hex,
                episode_id="ep",
                run_id="run",
            )
        )
        too_much = safety_pb2.CommitSpendRequest(reservation_id=granted.reservation_id, actual_amount=2.5)
        for _ in range(3):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await safety.stub.CommitSpend(too_much)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        rules = [v.rule for v in await unpublished_violations(safety.db)]
        assert rules == ["commit_exceeds_reservation"]
