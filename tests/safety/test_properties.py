"""Property-based tests over the gRPC inputs: any request gets an answer or a clear client error,
never INTERNAL, and never a grant that passes a limit."""

from __future__ import annotations

from typing import Any

import grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gaelp.v1 import safety_pb2

CLIENT_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
}
texts = st.one_of(
    st.sampled_from(["camp-a", "ep-1", "run-1", "", "camp-b"]),
    st.text(max_size=40),
    st.text(alphabet="abc-._:/@", min_size=1, max_size=2000),
)
amounts = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-5, max_value=60),
    st.sampled_from([0.0, -0.0, 1e-9, 5.0, 10.0, 10.000001, 1e308]),
)
phases = st.integers(min_value=-3, max_value=8)
# Each example calls a live in-process server: no per-example deadline; the fixture is reused on
# purpose (state accumulates across examples, as it does in a real ledger).
live_server = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


async def answer_or_clear_error(call: Any) -> Any:
    try:
        return await call
    except grpc.aio.AioRpcError as error:
        assert error.code() in CLIENT_ERRORS, (error.code(), error.details())
        assert error.details(), "an error without a message"
        return None


@live_server
@given(campaign=texts, phase=phases, amount=amounts, key=texts, episode=texts, run=texts, bid=amounts)
async def test_reserve_spend_inputs(
    safety: Any,
    tools: Any,
    campaign: str,
    phase: int,
    amount: float,
    key: str,
    episode: str,
    run: str,
    bid: float,
) -> None:
    if not (await safety.ledger.campaign("camp-a")).phase_entry_approved:
        await tools.enter_phase_3(safety.stub, "camp-a")
    reply = await answer_or_clear_error(
        safety.stub.ReserveSpend(
            safety_pb2.ReserveSpendRequest(
                campaign_id=campaign,
                phase=phase,
                amount=amount,
                idempotency_key=key,
                episode_id=episode,
                run_id=run,
                bid=bid,
            )
        )
    )
    if reply is not None and reply.granted:
        status = await safety.stub.GetBudgetStatus(
            safety_pb2.GetBudgetStatusRequest(campaign_id=campaign, phase=phase)
        )
        assert status.committed_today + status.reserved_today <= status.daily_limit + 1e-9
        assert 0 < amount <= status.episode_limit


@live_server
@given(reservation=texts, actual=amounts, key=texts)
async def test_commit_and_release_inputs(safety: Any, reservation: str, actual: float, key: str) -> None:
    await answer_or_clear_error(
        safety.stub.CommitSpend(
            safety_pb2.CommitSpendRequest(
                reservation_id=reservation, actual_amount=actual, idempotency_key=key
            )
        )
    )
    await answer_or_clear_error(
        safety.stub.ReleaseSpend(safety_pb2.ReleaseSpendRequest(reservation_id=reservation))
    )


@live_server
@given(
    campaign=texts,
    phase=phases,
    headline=texts,
    body=texts,
    scores=st.dictionaries(
        st.sampled_from(["brand_safety", "content_quality", "x", ""]), amounts, max_size=3
    ),
)
async def test_validate_creative_inputs(
    safety: Any, campaign: str, phase: int, headline: str, body: str, scores: dict[str, float]
) -> None:
    reply = await answer_or_clear_error(
        safety.stub.ValidateCreative(
            safety_pb2.ValidateCreativeRequest(
                campaign_id=campaign, phase=phase, headline=headline, body=body, scores=scores
            )
        )
    )
    if reply is not None and reply.approved:
        assert {"brand_safety", "content_quality"} <= set(scores), "a missing score passed"


@live_server
@given(
    kind=st.sampled_from(["enter_phase_3", "budget_increase", "resume_after_stop", "", "x" * 300]),
    campaign=texts,
    run=texts,
    phase=phases,
    amount=amounts,
    justification=texts,
    day=st.one_of(st.text(max_size=12), st.sampled_from(["2024-02-30", "2024-02-29", "9999-99-99"])),
)
async def test_approval_and_status_inputs(
    safety: Any,
    tools: Any,
    kind: str,
    campaign: str,
    run: str,
    phase: int,
    amount: float,
    justification: str,
    day: str,
) -> None:
    reply = await answer_or_clear_error(
        safety.stub.RequestApproval(
            safety_pb2.RequestApprovalRequest(
                approval=safety_pb2.ApprovalRequest(
                    kind=kind,
                    campaign_id=campaign,
                    run_id=run,
                    phase=phase,
                    amount=amount,
                    justification=justification,
                )
            )
        )
    )
    if reply is not None:
        await answer_or_clear_error(
            safety.stub.Decide(
                safety_pb2.DecideRequest(approval_id=reply.approval.approval_id, approve=False, comment=run),
                metadata=tools.operator_metadata,
            )
        )
    await answer_or_clear_error(
        safety.stub.GetBudgetStatus(
            safety_pb2.GetBudgetStatusRequest(campaign_id=campaign, phase=phase, day=day)
        )
    )
    await answer_or_clear_error(
        safety.stub.RegisterCampaign(
            safety_pb2.RegisterCampaignRequest(campaign_id=campaign, time_zone=run, daily_limit=amount),
            metadata=tools.operator_metadata,
        )
    )
