"""The SafetyPolicy gRPC methods: validate the input, then ask the ledger or the approval store."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from datetime import date
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from gaelp.config.sections.safety_policy import SafetyPolicySettings
from gaelp.db.ledger import (
    MICROS_PER_DOLLAR,
    CampaignConflict,
    CommitExceedsReservation,
    IdempotencyConflict,
    ReservationClosed,
    ReserveRequest,
    SpendLedger,
    SpendLimits,
    UnknownCampaign,
    UnknownReservation,
    local_day,
    to_dollars,
    to_micros,
)
from gaelp.db.ledger_approvals import (
    APPROVAL_KINDS,
    AlreadyDecided,
    Approval,
    ApprovalStore,
    UnknownApproval,
)
from gaelp.db.ledger_outbox import ViolationRecord, record_violation
from gaelp.service import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    rpc,
)
from gaelp.service.auth import OperatorAuth
from gaelp.service.validation import require_enum, require_identifier, require_number, require_text
from gaelp.v1 import common_pb2, safety_pb2, safety_pb2_grpc
from safety_policy.creative import SCORE_NAMES, assess_creative

REAL_MONEY_PHASES = {common_pb2.PHASE_REAL_TESTING, common_pb2.PHASE_SCALED}
ALL_PHASES = {
    common_pb2.PHASE_SIMULATION,
    common_pb2.PHASE_HISTORICAL,
    common_pb2.PHASE_REAL_TESTING,
    common_pb2.PHASE_SCALED,
}
_PHASE_NAMES = {
    common_pb2.PHASE_SIMULATION: "simulation",
    common_pb2.PHASE_HISTORICAL: "historical",
    common_pb2.PHASE_REAL_TESTING: "real_testing",
    common_pb2.PHASE_SCALED: "scaled",
}
_ZONE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_+/-]*$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MAX_ZONE_CHARS = 64
_MAX_NOTE_CHARS = 2048

Clock = Callable[[], float]


def spend_limits(settings: SafetyPolicySettings, phase: int) -> SpendLimits:
    """The ledger limits of a real-money phase from the service settings."""
    if phase == common_pb2.PHASE_REAL_TESTING:
        limits = settings.real_testing
        ceiling = limits.daily_limit_max
    else:
        limits = settings.scaled
        ceiling = settings.scaled_daily_ceiling
    return SpendLimits(
        episode_micros=to_micros(limits.episode_limit),
        phase_total_micros=to_micros(limits.phase_total),
        max_bid_micros=to_micros(limits.max_bid),
        daily_ceiling_micros=to_micros(ceiling),
        requires_entry_approval=True,
        budget_steps_apply=phase == common_pb2.PHASE_SCALED,
    )


def _timestamp(seconds: float | None) -> Timestamp | None:
    if seconds is None:
        return None
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def _approval_message(approval: Approval) -> safety_pb2.ApprovalRequest:
    return safety_pb2.ApprovalRequest(
        approval_id=approval.approval_id,
        kind=approval.kind,
        campaign_id=approval.campaign_id,
        run_id=approval.run_id,
        phase=common_pb2.Phase.ValueType(approval.phase),
        amount=to_dollars(approval.amount_micros),
        justification=approval.justification,
        status=approval.status,
        decided_by=approval.decided_by,
        requested_at=_timestamp(approval.requested_at),
        decided_at=_timestamp(approval.decided_at),
    )


def _real_money_phase(name: str, phase: common_pb2.Phase.ValueType) -> common_pb2.Phase.ValueType:
    if phase in (common_pb2.PHASE_SIMULATION, common_pb2.PHASE_HISTORICAL):
        raise InvalidArgument(
            f"{name}: simulated phases spend no money; use PHASE_REAL_TESTING or PHASE_SCALED"
        )
    return require_enum(name, phase, REAL_MONEY_PHASES)


def require_micros(name: str, value: float, *, maximum: float, allow_zero: bool = False) -> int:
    """Dollars as a whole number of micro-dollars: finite, in range, at least one micro-dollar unless
    zero is allowed, and no fraction of a micro-dollar (which the ledger could only round away)."""
    require_number(name, value, minimum=0.0, maximum=maximum)
    scaled = value * MICROS_PER_DOLLAR
    micros = round(scaled)
    if not math.isclose(scaled, micros, rel_tol=1e-9, abs_tol=1e-6):
        raise InvalidArgument(f"{name} must be a whole number of micro-dollars (at most 6 decimals)")
    if micros < 1 and not allow_zero:
        raise InvalidArgument(f"{name} must be at least one micro-dollar (0.000001)")
    return micros


def _optional_identifier(name: str, value: str) -> str:
    return require_identifier(name, value) if value else ""


class SafetyPolicyServicer(safety_pb2_grpc.SafetyPolicyServicer):
    def __init__(
        self,
        settings: SafetyPolicySettings,
        ledger: SpendLedger,
        approvals: ApprovalStore,
        clock: Clock = time.time,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.approvals = approvals
        self.auth = OperatorAuth(settings.operators)
        self.clock = clock
        self._limits = {phase: spend_limits(settings, phase) for phase in REAL_MONEY_PHASES}

    def _amount(self, name: str, value: float, *, allow_zero: bool = False) -> int:
        return require_micros(name, value, maximum=self.settings.max_amount, allow_zero=allow_zero)

    async def _known_campaign(self, campaign_id: str) -> None:
        require_identifier("campaign_id", campaign_id)
        if await self.ledger.campaign(campaign_id) is None:
            raise InvalidArgument(f"campaign_id {campaign_id!r} is not a registered campaign")

    @rpc
    async def ReserveSpend(
        self, request: safety_pb2.ReserveSpendRequest, context: grpc.aio.ServicerContext
    ) -> safety_pb2.ReserveSpendResponse:
        require_identifier("campaign_id", request.campaign_id)
        phase = _real_money_phase("phase", request.phase)
        amount = self._amount("amount", request.amount)
        require_identifier("idempotency_key", request.idempotency_key, max_length=256)
        require_identifier("episode_id", request.episode_id)
        _optional_identifier("run_id", request.run_id)
        bid = self._amount("bid", request.bid, allow_zero=True)
        try:
            outcome = await self.ledger.reserve(
                ReserveRequest(
                    campaign_id=request.campaign_id,
                    phase=phase,
                    amount_micros=amount,
                    idempotency_key=request.idempotency_key,
                    episode_id=request.episode_id,
                    run_id=request.run_id,
                    bid_micros=bid,
                ),
                self._limits[phase],
                self.clock(),
            )
        except UnknownCampaign as error:
            raise InvalidArgument(f"campaign_id: {error}") from error
        except IdempotencyConflict as error:
            raise AlreadyExists(str(error)) from error
        response = safety_pb2.ReserveSpendResponse(
            granted=outcome.granted,
            refused_by=outcome.refused_by,
            reason=outcome.reason,
            remaining=to_dollars(outcome.remaining_micros),
        )
        if outcome.reservation is not None:
            response.reservation_id = outcome.reservation.reservation_id
            expires_at = _timestamp(outcome.reservation.expires_at)
            assert expires_at is not None  # a reservation always expires
            response.expires_at.CopyFrom(expires_at)
        return response

    @rpc
    async def CommitSpend(
        self, request: safety_pb2.CommitSpendRequest, context: grpc.aio.ServicerContext
    ) -> safety_pb2.CommitSpendResponse:
        require_identifier("reservation_id", request.reservation_id)
        actual = self._amount("actual_amount", request.actual_amount, allow_zero=True)
        _optional_identifier("idempotency_key", request.idempotency_key)
        now = self.clock()
        try:
            outcome = await self.ledger.commit(
                request.reservation_id, actual, request.idempotency_key, now, self._limits_of
            )
        except UnknownReservation as error:
            raise NotFound(str(error)) from error
        except ReservationClosed as error:
            raise FailedPrecondition(str(error)) from error
        except CommitExceedsReservation as error:
            await self._commit_breach(request.reservation_id, actual, str(error), now)
            raise InvalidArgument(f"actual_amount: {error}") from error
        return safety_pb2.CommitSpendResponse(
            reservation_id=outcome.reservation_id,
            committed=to_dollars(outcome.committed_micros),
            released=to_dollars(outcome.released_micros),
        )

    def _limits_of(self, phase: int) -> SpendLimits:
        return self._limits[common_pb2.Phase.ValueType(phase)]

    async def _commit_breach(self, reservation_id: str, actual: int, detail: str, now: float) -> None:
        reservation = await self.ledger.reservation(reservation_id)
        assert reservation is not None
        async with self.ledger.db.transaction() as tx:
            await record_violation(
                tx,
                ViolationRecord(
                    campaign_id=reservation.campaign_id,
                    run_id=reservation.run_id,
                    rule="commit_exceeds_reservation",
                    severity="critical",
                    amount_micros=actual,
                    phase=reservation.phase,
                    action_taken="refused",
                    detail=f"reservation {reservation_id}: {detail}",
                    occurred_at=now,
                    violation_id=f"commit_exceeds:{reservation_id}:{actual}",
                ),
            )

    @rpc
    async def ReleaseSpend(
        self, request: safety_pb2.ReleaseSpendRequest, context: grpc.aio.ServicerContext
    ) -> safety_pb2.ReleaseSpendResponse:
        require_identifier("reservation_id", request.reservation_id)
        try:
            released = await self.ledger.release(request.reservation_id, self.clock())
        except UnknownReservation as error:
            raise NotFound(str(error)) from error
        except ReservationClosed as error:
            raise FailedPrecondition(str(error)) from error
        return safety_pb2.ReleaseSpendResponse(
            reservation_id=request.reservation_id, released=to_dollars(released)
        )

    @rpc
    async def GetBudgetStatus(
        self, request: safety_pb2.GetBudgetStatusRequest, context: grpc.aio.ServicerContext
    ) -> safety_pb2.BudgetStatus:
        await self._known_campaign(request.campaign_id)
        phase = _real_money_phase("phase", request.phase)
        now = self.clock()
        day = request.day
        if day:
            if not _DAY.match(day):
                raise InvalidArgument(f"day must be YYYY-MM-DD, got {day[:32]!r}")
            try:
                date.fromisoformat(day)
            except ValueError as error:
                raise InvalidArgument(f"day {day!r} is not a calendar date") from error
        limits = spend_limits(self.settings, phase)
        campaign = await self.ledger.campaign(request.campaign_id)
        assert campaign is not None
        usage = await self.ledger.usage(
            request.campaign_id, phase, day or local_day(now, campaign.time_zone), limits, now
        )
        return safety_pb2.BudgetStatus(
            campaign_id=request.campaign_id,
            phase=common_pb2.Phase.ValueType(phase),
            day=usage.day,
            daily_limit=to_dollars(usage.daily_limit_micros),
            committed_today=to_dollars(usage.committed_day_micros),
            reserved_today=to_dollars(usage.reserved_day_micros),
            phase_limit=to_dollars(limits.phase_total_micros),
            committed_phase=to_dollars(usage.committed_phase_micros),
            reserved_phase=to_dollars(usage.reserved_phase_micros),
            emergency_stopped=usage.emergency_stopped,
            episode_limit=to_dollars(limits.episode_micros),
            max_bid=to_dollars(limits.max_bid_micros),
            phase_entry_approved=usage.campaign.phase_entry_approved,
            time_zone=usage.campaign.time_zone,
        )

    @rpc
    async def ValidateCreative(
        self, request: safety_pb2.ValidateCreativeRequest, context: grpc.aio.ServicerContext
    ) -> safety_pb2.ValidateCreativeResponse:
        await self._known_campaign(request.campaign_id)
        phase = require_enum("phase", request.phase, ALL_PHASES)
        limit = self.settings.max_creative_chars
        require_text("headline", request.headline, max_length=limit)
        require_text("body", request.body, max_length=limit, required=False)
        for name, score in request.scores.items():
            if name not in SCORE_NAMES:
                raise InvalidArgument(f"scores: unknown score {name[:64]!r}; expected {SCORE_NAMES}")
            require_number(f"scores[{name}]", score, minimum=0.0, maximum=1.0)
        thresholds = self.settings.creative_thresholds.get(_PHASE_NAMES[phase])
        if thresholds is None:
            raise FailedPrecondition(f"no creative thresholds are configured for {_PHASE_NAMES[phase]}")
        findings = assess_creative(
            request.headline, request.body, request.scores, thresholds, self.settings.forbidden_keywords
        )
        if findings:
            now = self.clock()
            async with self.ledger.db.transaction() as tx:
                for finding in findings:
                    await record_violation(
                        tx,
                        ViolationRecord(
                            campaign_id=request.campaign_id,
                            run_id="",
                            rule=f"creative:{finding.rule}",
                            severity="warning",
                            amount_micros=0,
                            phase=phase,
                            action_taken="rejected",
                            detail=finding.reason,
                            occurred_at=now,
                        ),
                    )
        return safety_pb2.ValidateCreativeResponse(
            approved=not findings, reasons=[finding.reason for finding in findings]
        )

    @rpc
    async def RequestApproval(
        self, request: safety_pb2.RequestApprovalRequest, context: grpc.aio.ServicerContext
    ) -> safety_pb2.RequestApprovalResponse:
        asked = request.approval
        kind = asked.kind
        if kind not in APPROVAL_KINDS:
            raise InvalidArgument(f"approval.kind must be one of {APPROVAL_KINDS}, got {kind[:64]!r}")
        _optional_identifier("approval.run_id", asked.run_id)
        justification = require_text("approval.justification", asked.justification,
                                     max_length=_MAX_NOTE_CHARS)
        amount = 0
        phase = asked.phase
        if kind == "resume_after_stop":
            _optional_identifier("approval.campaign_id", asked.campaign_id)
            if not (await self.approvals.stop_state()).stopped:
                raise FailedPrecondition("no emergency stop is in force")
        else:
            await self._known_campaign(asked.campaign_id)
        if kind == "enter_phase_3":
            if phase not in (common_pb2.PHASE_UNSPECIFIED, common_pb2.PHASE_REAL_TESTING):
                raise InvalidArgument("approval.phase of enter_phase_3 must be PHASE_REAL_TESTING")
            phase = common_pb2.PHASE_REAL_TESTING
        elif kind == "budget_increase":
            if phase != common_pb2.PHASE_SCALED:
                raise InvalidArgument("approval.phase of budget_increase must be PHASE_SCALED")
            require_number("approval.amount", asked.amount, minimum=0.0, exclusive_minimum=True,
                           maximum=self.settings.max_budget_step)
            amount = to_micros(asked.amount)
        elif phase not in ALL_PHASES and phase != common_pb2.PHASE_UNSPECIFIED:
            raise InvalidArgument(f"approval.phase has an unknown value {phase}")
        approval = await self.approvals.request(
            kind, asked.campaign_id, asked.run_id, phase, amount, justification, self.clock()
        )
        return safety_pb2.RequestApprovalResponse(approval=_approval_message(approval))

    @rpc
    async def ListPending(
        self, request: safety_pb2.ListPendingRequest, context: grpc.aio.ServicerContext
    ) -> safety_pb2.ListPendingResponse:
        pending = await self.approvals.pending()
        return safety_pb2.ListPendingResponse(approvals=[_approval_message(item) for item in pending])

    @rpc
    async def Decide(
        self, request: safety_pb2.DecideRequest, context: grpc.aio.ServicerContext
    ) -> safety_pb2.DecideResponse:
        operator = self.auth.operator(context)
        require_identifier("approval_id", request.approval_id)
        comment = require_text("comment", request.comment, max_length=_MAX_NOTE_CHARS, required=False)
        try:
            decided = await self.approvals.decide(
                request.approval_id, request.approve, operator, comment, self.clock()
            )
        except UnknownApproval as error:
            raise NotFound(str(error)) from error
        except AlreadyDecided as error:
            raise FailedPrecondition(str(error)) from error
        return safety_pb2.DecideResponse(approval=_approval_message(decided))

    @rpc
    async def EmergencyStop(
        self, request: safety_pb2.EmergencyStopRequest, context: grpc.aio.ServicerContext
    ) -> safety_pb2.EmergencyStopResponse:
        operator = self.auth.operator(context)
        reason = require_text("reason", request.reason, max_length=_MAX_NOTE_CHARS)
        state = await self.approvals.emergency_stop(operator, reason, self.clock())
        return safety_pb2.EmergencyStopResponse(
            stopped=state.stopped, stopped_at=_timestamp(state.changed_at)
        )

    @rpc
    async def RegisterCampaign(
        self, request: safety_pb2.RegisterCampaignRequest, context: grpc.aio.ServicerContext
    ) -> safety_pb2.RegisterCampaignResponse:
        self.auth.operator(context)
        require_identifier("campaign_id", request.campaign_id)
        time_zone = require_text("time_zone", request.time_zone, max_length=_MAX_ZONE_CHARS)
        if not is_time_zone(time_zone):
            raise InvalidArgument(f"time_zone {time_zone!r} is not an IANA time zone")
        bounds = self.settings.real_testing
        require_number("daily_limit", request.daily_limit, minimum=bounds.daily_limit_min,
                       maximum=bounds.daily_limit_max)
        try:
            campaign, created = await self.ledger.register_campaign(
                request.campaign_id, time_zone, to_micros(request.daily_limit), self.clock()
            )
        except CampaignConflict as error:
            raise AlreadyExists(str(error)) from error
        return safety_pb2.RegisterCampaignResponse(
            campaign_id=campaign.campaign_id,
            time_zone=campaign.time_zone,
            daily_limit=to_dollars(campaign.daily_limit_micros),
            created=created,
        )


def is_time_zone(name: str) -> bool:
    if not _ZONE_NAME.match(name):
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True
