"""The SafetyPolicy gRPC API end to end against an in-process server on SQLite."""

from __future__ import annotations

import math
import uuid
from typing import Any

import grpc
import pytest

from gaelp.db.ledger_outbox import unpublished_violations
from gaelp.v1 import common_pb2, safety_pb2

REAL = common_pb2.PHASE_REAL_TESTING
SCALED = common_pb2.PHASE_SCALED


def reserve(campaign: str = "camp-a", amount: float = 1.0, **fields: Any) -> safety_pb2.ReserveSpendRequest:
    values: dict[str, Any] = {
        "campaign_id": campaign,
        "phase": REAL,
        "amount": amount,
        "idempotency_key": uuid.uuid4().hex,
        "episode_id": "ep-1",
        "run_id": "run-1",
    }
    values.update(fields)
    return safety_pb2.ReserveSpendRequest(**values)


async def expect_code(call: Any, code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    details = caught.value.details() or ""
    assert details
    return details


async def test_phase_3_needs_an_approved_entry_then_grants_and_commits(safety: Any, tools: Any) -> None:
    refused = await safety.stub.ReserveSpend(reserve())
    assert not refused.granted and refused.refused_by == "phase_entry_approval"
    await tools.enter_phase_3(safety.stub, "camp-a")
    granted = await safety.stub.ReserveSpend(reserve(amount=4.0))
    assert granted.granted and granted.reservation_id and granted.remaining == pytest.approx(6.0)
    committed = await safety.stub.CommitSpend(
        safety_pb2.CommitSpendRequest(reservation_id=granted.reservation_id, actual_amount=3.0)
    )
    assert (committed.committed, committed.released) == (pytest.approx(3.0), pytest.approx(1.0))
    status = await safety.stub.GetBudgetStatus(
        safety_pb2.GetBudgetStatusRequest(campaign_id="camp-a", phase=REAL)
    )
    assert status.committed_today == pytest.approx(3.0) and status.reserved_today == 0
    assert (
        status.daily_limit == 50 and status.phase_limit == 500 and status.time_zone == "America/Los_Angeles"
    )


async def test_each_limit_refuses_by_name(safety: Any, tools: Any) -> None:
    await tools.enter_phase_3(safety.stub, "camp-a")
    over_bid = await safety.stub.ReserveSpend(reserve(bid=safety.settings.real_testing.max_bid + 0.01))
    assert over_bid.refused_by == "max_bid"
    episode = await safety.stub.ReserveSpend(reserve(amount=10.01))
    assert episode.refused_by == "episode_limit"
    for index in range(5):
        granted = await safety.stub.ReserveSpend(reserve(amount=10.0, episode_id=f"ep-{index}"))
        assert granted.granted
    daily = await safety.stub.ReserveSpend(reserve(amount=0.01, episode_id="ep-new"))
    assert daily.refused_by == "daily_limit" and "daily_limit" in daily.reason
    violations = await unpublished_violations(safety.db)
    assert {"max_bid", "episode_limit", "daily_limit"} <= {v.rule for v in violations}
    assert all(v.action_taken == "refused" for v in violations)


async def test_idempotent_reserve_and_commit_never_spend_twice(safety: Any, tools: Any) -> None:
    await tools.enter_phase_3(safety.stub, "camp-a")
    request = reserve(amount=2.0)
    first = await safety.stub.ReserveSpend(request)
    again = await safety.stub.ReserveSpend(request)
    assert again.granted and again.reservation_id == first.reservation_id
    commit = safety_pb2.CommitSpendRequest(reservation_id=first.reservation_id, actual_amount=2.0)
    await safety.stub.CommitSpend(commit)
    await safety.stub.CommitSpend(commit)
    status = await safety.stub.GetBudgetStatus(
        safety_pb2.GetBudgetStatusRequest(campaign_id="camp-a", phase=REAL)
    )
    assert status.committed_today == pytest.approx(2.0)
    changed = safety_pb2.ReserveSpendRequest()
    changed.CopyFrom(request)
    changed.amount = 3.0
    await expect_code(safety.stub.ReserveSpend(changed), grpc.StatusCode.ALREADY_EXISTS)
    different_commit = safety_pb2.CommitSpendRequest(reservation_id=first.reservation_id, actual_amount=1.0)
    await expect_code(safety.stub.CommitSpend(different_commit), grpc.StatusCode.FAILED_PRECONDITION)


async def test_commit_above_reservation_is_refused_and_reported(safety: Any, tools: Any) -> None:
    await tools.enter_phase_3(safety.stub, "camp-a")
    granted = await safety.stub.ReserveSpend(reserve(amount=2.0))
    await expect_code(
        safety.stub.CommitSpend(
            safety_pb2.CommitSpendRequest(reservation_id=granted.reservation_id, actual_amount=2.5)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    rules = [v.rule for v in await unpublished_violations(safety.db)]
    assert "commit_exceeds_reservation" in rules


async def test_release_frees_the_reservation(safety: Any, tools: Any) -> None:
    await tools.enter_phase_3(safety.stub, "camp-a")
    granted = await safety.stub.ReserveSpend(reserve(amount=9.0))
    released = await safety.stub.ReleaseSpend(
        safety_pb2.ReleaseSpendRequest(reservation_id=granted.reservation_id)
    )
    assert released.released == pytest.approx(9.0)
    again = await safety.stub.ReleaseSpend(
        safety_pb2.ReleaseSpendRequest(reservation_id=granted.reservation_id)
    )
    assert again.released == 0
    assert (await safety.stub.ReserveSpend(reserve(amount=10.0))).granted
    # The platform spent money on the released reservation after all: it is recorded, and as the
    # episode's headroom was reserved again meanwhile, the episode limit is passed and reported.
    late = safety_pb2.CommitSpendRequest(reservation_id=granted.reservation_id, actual_amount=1.0)
    assert (await safety.stub.CommitSpend(late)).committed == pytest.approx(1.0)
    assert (await safety.stub.CommitSpend(late)).committed == pytest.approx(1.0)
    over = [v for v in await unpublished_violations(safety.db) if v.action_taken == "recorded_over_limit"]
    assert [(v.rule, v.amount_micros, v.severity) for v in over] == [("episode_limit", 1_000_000, "critical")]


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"amount": -1.0}, "amount"),
        ({"amount": math.nan}, "finite"),
        ({"amount": math.inf}, "finite"),
        ({"amount": 1e12}, "amount"),
        ({"amount": 0.0}, "amount"),
        ({"campaign_id": "nope"}, "not registered"),
        ({"campaign_id": "x" * 5000}, "campaign_id"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"episode_id": ""}, "episode_id"),
        ({"phase": common_pb2.PHASE_SIMULATION}, "simulated"),
        ({"phase": 99}, "phase"),
        ({"bid": -0.5}, "bid"),
    ],
)
async def test_reserve_rejects_bad_input(safety: Any, fields: dict[str, Any], fragment: str) -> None:
    details = await expect_code(safety.stub.ReserveSpend(reserve(**fields)), grpc.StatusCode.INVALID_ARGUMENT)
    assert fragment in details


async def test_decide_and_stop_need_a_valid_operator_token(safety: Any, tools: Any) -> None:
    asked = await safety.stub.RequestApproval(
        safety_pb2.RequestApprovalRequest(
            approval=safety_pb2.ApprovalRequest(
                kind="enter_phase_3", campaign_id="camp-a", justification="graduated"
            )
        )
    )
    decide = safety_pb2.DecideRequest(approval_id=asked.approval.approval_id, approve=True)
    await expect_code(safety.stub.Decide(decide), grpc.StatusCode.UNAUTHENTICATED)
    await expect_code(
        safety.stub.Decide(decide, metadata=(("authorization", "Bearer wrong"),)),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    stop = safety_pb2.EmergencyStopRequest(reason="test")
    await expect_code(safety.stub.EmergencyStop(stop), grpc.StatusCode.UNAUTHENTICATED)
    await expect_code(
        safety.stub.EmergencyStop(stop, metadata=(("authorization", "Bearer wrong"),)),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await expect_code(
        safety.stub.EmergencyStop(stop, metadata=(("authorization", "Basic abc"),)),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    pending = await safety.stub.ListPending(safety_pb2.ListPendingRequest())
    assert [a.approval_id for a in pending.approvals] == [asked.approval.approval_id]
    decided = await safety.stub.Decide(decide, metadata=tools.operator_metadata)
    assert decided.approval.status == "approved" and decided.approval.decided_by == tools.operator
    await expect_code(
        safety.stub.Decide(decide, metadata=tools.operator_metadata), grpc.StatusCode.FAILED_PRECONDITION
    )
    audit = await safety.approvals.audit_log(asked.approval.approval_id)
    assert [(e.action, e.actor) for e in audit] == [
        ("request", "unknown"),
        ("decide:approved", tools.operator),
    ]
    assert audit[1].at >= audit[0].at > 0


async def test_emergency_stop_refuses_everything_until_an_approved_resume(safety: Any, tools: Any) -> None:
    await tools.enter_phase_3(safety.stub, "camp-a")
    stopped = await safety.stub.EmergencyStop(
        safety_pb2.EmergencyStopRequest(reason="runaway spend"), metadata=tools.operator_metadata
    )
    assert stopped.stopped and stopped.stopped_at.seconds > 0
    refused = await safety.stub.ReserveSpend(reserve())
    assert not refused.granted and refused.refused_by == "emergency_stop"
    asked = await safety.stub.RequestApproval(
        safety_pb2.RequestApprovalRequest(
            approval=safety_pb2.ApprovalRequest(kind="resume_after_stop", justification="fixed")
        )
    )
    assert not (await safety.stub.ReserveSpend(reserve())).granted  # a pending request is not a resume
    rejected = await safety.stub.Decide(
        safety_pb2.DecideRequest(approval_id=asked.approval.approval_id, approve=False),
        metadata=tools.operator_metadata,
    )
    assert rejected.approval.status == "rejected"
    assert not (await safety.stub.ReserveSpend(reserve())).granted
    await tools.approve(safety.stub, "resume_after_stop", "")
    assert (await safety.stub.ReserveSpend(reserve())).granted
    actions = [entry.action for entry in await safety.approvals.audit_log()]
    assert "emergency_stop" in actions and "decide:rejected" in actions and "decide:approved" in actions
    await expect_code(
        safety.stub.RequestApproval(
            safety_pb2.RequestApprovalRequest(
                approval=safety_pb2.ApprovalRequest(kind="resume_after_stop", justification="again")
            )
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )


async def test_phase_4_daily_limit_rises_only_by_approved_steps(safety: Any, tools: Any) -> None:
    await tools.enter_phase_3(safety.stub, "camp-a")
    status_request = safety_pb2.GetBudgetStatusRequest(campaign_id="camp-a", phase=SCALED)
    assert (await safety.stub.GetBudgetStatus(status_request)).daily_limit == 50
    asked = await safety.stub.RequestApproval(
        safety_pb2.RequestApprovalRequest(
            approval=safety_pb2.ApprovalRequest(
                kind="budget_increase",
                campaign_id="camp-a",
                phase=SCALED,
                amount=25.0,
                justification="ROI 12%",
            )
        )
    )
    assert (await safety.stub.GetBudgetStatus(status_request)).daily_limit == 50
    await safety.stub.Decide(
        safety_pb2.DecideRequest(approval_id=asked.approval.approval_id, approve=True),
        metadata=tools.operator_metadata,
    )
    assert (await safety.stub.GetBudgetStatus(status_request)).daily_limit == 75
    phase_3 = safety_pb2.GetBudgetStatusRequest(campaign_id="camp-a", phase=REAL)
    assert (await safety.stub.GetBudgetStatus(phase_3)).daily_limit == 50
    await expect_code(
        safety.stub.RequestApproval(
            safety_pb2.RequestApprovalRequest(
                approval=safety_pb2.ApprovalRequest(
                    kind="budget_increase",
                    campaign_id="camp-a",
                    phase=SCALED,
                    amount=500.0,
                    justification="x",
                )
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )


async def test_validate_creative_fails_missing_scores_and_forbidden_words(safety: Any) -> None:
    good = await safety.stub.ValidateCreative(
        safety_pb2.ValidateCreativeRequest(
            campaign_id="camp-a",
            phase=REAL,
            headline="Secure shoes for families",
            body="Comfortable.",
            scores={"brand_safety": 0.9, "content_quality": 0.7},
        )
    )
    assert good.approved and not good.reasons
    missing = await safety.stub.ValidateCreative(
        safety_pb2.ValidateCreativeRequest(
            campaign_id="camp-a", phase=REAL, headline="Shoes", scores={"content_quality": 0.9}
        )
    )
    assert not missing.approved and missing.reasons == ["brand_safety score is missing"]
    bad = await safety.stub.ValidateCreative(
        safety_pb2.ValidateCreativeRequest(
            campaign_id="camp-a",
            phase=REAL,
            headline="GUARANTEED results",
            body="a miracle",
            scores={"brand_safety": 0.7, "content_quality": 0.9},
        )
    )
    assert not bad.approved and len(bad.reasons) == 3
    lenient = await safety.stub.ValidateCreative(
        safety_pb2.ValidateCreativeRequest(
            campaign_id="camp-a",
            phase=common_pb2.PHASE_SIMULATION,
            headline="Shoes",
            scores={"brand_safety": 0.7, "content_quality": 0.9},
        )
    )
    assert lenient.approved
    await expect_code(
        safety.stub.ValidateCreative(
            safety_pb2.ValidateCreativeRequest(
                campaign_id="camp-a", phase=REAL, headline="Shoes", scores={"brand_safety": math.nan}
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    rules = {v.rule for v in await unpublished_violations(safety.db)}
    assert {
        "creative:brand_safety_missing",
        "creative:forbidden_keyword",
        "creative:brand_safety_below_threshold",
    } <= rules


async def test_register_campaign_needs_an_operator_and_valid_limits(safety: Any, tools: Any) -> None:
    request = safety_pb2.RegisterCampaignRequest(
        campaign_id="camp-b", time_zone="Asia/Tokyo", daily_limit=20.0
    )
    await expect_code(safety.stub.RegisterCampaign(request), grpc.StatusCode.UNAUTHENTICATED)
    created = await safety.stub.RegisterCampaign(request, metadata=tools.operator_metadata)
    assert created.created
    again = await safety.stub.RegisterCampaign(request, metadata=tools.operator_metadata)
    assert not again.created
    for bad in (
        safety_pb2.RegisterCampaignRequest(campaign_id="c", time_zone="Mars/Olympus", daily_limit=20.0),
        safety_pb2.RegisterCampaignRequest(campaign_id="c", time_zone="../../etc/passwd", daily_limit=20.0),
        safety_pb2.RegisterCampaignRequest(campaign_id="c", time_zone="UTC", daily_limit=51.0),
        safety_pb2.RegisterCampaignRequest(campaign_id="c", time_zone="UTC", daily_limit=9.0),
    ):
        await expect_code(
            safety.stub.RegisterCampaign(bad, metadata=tools.operator_metadata),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
    changed = safety_pb2.RegisterCampaignRequest(campaign_id="camp-b", time_zone="UTC", daily_limit=20.0)
    await expect_code(
        safety.stub.RegisterCampaign(changed, metadata=tools.operator_metadata),
        grpc.StatusCode.ALREADY_EXISTS,
    )
