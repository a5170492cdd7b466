"""The MoneyControl gRPC API of the orchestrator: pause every money-phase campaign (the platform
side of the emergency stop; the safety policy's EmergencyStop blocks the reservations), and the
money report of a run."""

from __future__ import annotations

import logging

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from gaelp.service import NotFound, rpc
from gaelp.service.validation import require_identifier, require_text
from gaelp.v1 import money_pb2, money_pb2_grpc
from orchestrator.money.phase import MoneyPhaseRunner

logger = logging.getLogger(__name__)
MAX_REASON_CHARS = 2048


class MoneyControlServicer(money_pb2_grpc.MoneyControlServicer):
    def __init__(self, money: MoneyPhaseRunner) -> None:
        self.money = money

    @rpc
    async def PauseAllCampaigns(
        self, request: money_pb2.PauseAllCampaignsRequest, context: grpc.aio.ServicerContext
    ) -> money_pb2.PauseAllCampaignsResponse:
        reason = require_text("reason", request.reason, max_length=MAX_REASON_CHARS)
        paused = await self.money.pause_everything()
        paused_at = Timestamp()
        paused_at.GetCurrentTime()
        logger.warning("emergency stop: every money-phase campaign paused",
                       extra={"reason": reason, "campaigns": paused})
        return money_pb2.PauseAllCampaignsResponse(paused_campaign_ids=paused, paused_at=paused_at)

    @rpc
    async def GetMoneyReport(
        self, request: money_pb2.MoneyReportRequest, context: grpc.aio.ServicerContext
    ) -> money_pb2.MoneyReport:
        run_id = require_identifier("run_id", request.run_id, max_length=64)
        document = await (await self.money.phases()).store.find(run_id)
        if document is None:
            raise NotFound(f"run {run_id} has no money-phase record")
        return money_pb2.MoneyReport(run_id=run_id, document_json=document.model_dump_json())
