"""Phase 3 on the ad platform: the run's policy drives real campaigns, every cent reserved first.

One campaign is one episode: created with the policy's first settings, re-decided every
`step_hours` platform hours for `campaign_days` days, then paused and settled once the platform's
lagging reports cover its last hour. The money rule, without exception: each decision window opens
only after the safety policy granted its reservation (orchestrator.money.reservations says how much);
the platform calls of the window are sent only then; a refusal is a violation (the ledger records
it) and the campaign is paused instead. Spend is committed per window from the platform's reports,
which releases the rest of the reservation. A creative goes live only once ValidateCreative approved
it with the scores of orchestrator.money.creative.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from gaelp.bus import EPISODES, BusProducer
from gaelp.config.action_bounds import BID_RANGE
from gaelp.config.sections.money import MoneySettings
from gaelp.sim.market.config import CREATIVE_TYPES, HOURS_PER_DAY
from gaelp.sim.platform.connector import CampaignReport, CampaignSpec, PlatformError
from gaelp.sim.platform.mcp_client import McpPlatformConnector
from gaelp.sim.platform.sandbox_market import sandbox_catalogue_market, sandbox_market_config
from gaelp.v1 import common_pb2, events_pb2, safety_pb2
from orchestrator.money.approvals import EntryGate
from orchestrator.money.creative import make_creative
from orchestrator.money.policy_io import (
    CampaignSettings,
    advertiser_view,
    decide,
    keep_creative,
    platform_observation,
)
from orchestrator.money.reconciliation import reconcile
from orchestrator.money.records import (
    CampaignRecord,
    MoneyRunDocument,
    MoneyStore,
    ViolationRecord,
    WindowRecord,
)
from orchestrator.money.reservations import as_micros, episode_id, reservation_key, window_cap
from orchestrator.money.safety import SafetyCalls
from orchestrator.run_document import PhaseEntry

logger = logging.getLogger(__name__)

Save = Callable[[], Awaitable[None]]
# Lets platform hours pass and answers the hour (phase 4's campaigns share one clock).
Advance = Callable[[int], Awaitable[int]]
# Phase 4's say on a window's settings (budget step-ups): (record, last report, live, wanted) -> settings.
StepUp = Callable[[CampaignRecord, CampaignReport, CampaignSettings, CampaignSettings],
                  Awaitable[CampaignSettings]]


FINISHED = frozenset({"settled", "refused", "failed", "stopped", "interrupted"})


class EmergencyStopped(Exception):
    """The safety policy refused a reservation because an emergency stop is in force."""


@dataclass
class RunHandle:
    """What the driver needs of a run: identity, policy, and how to report state back."""

    run_id: str
    phase: int
    agent: Any
    policy_version: Callable[[], int]
    set_state: Callable[[str, str], Awaitable[None]]  # (state, detail), saved
    episode_done: Callable[[], Awaitable[None]]
    stopping: Callable[[], bool]
    current_phase: Callable[[], int]  # an assessment may move the run on while its campaigns run
    entry: PhaseEntry  # the run's entry into `phase`: its campaigns, keys and episodes are this entry's


@dataclass
class _Live:
    """A campaign the platform is running now (what the emergency stop must pause)."""

    campaign_id: str
    run_id: str


@dataclass
class MoneyPhases:
    settings: MoneySettings
    store: MoneyStore
    producer: BusProducer
    safety: SafetyCalls = field(init=False)
    live: dict[str, _Live] = field(default_factory=dict)
    stop_requested: asyncio.Event = field(default_factory=asyncio.Event)
    # Phase 4's campaigns save the run's one money document concurrently.
    save_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self.safety = SafetyCalls(self.settings.safety_policy_target, self.settings.rpc_deadline_s)
        # The account's catalogue: its logged products (phase 3 sells them) and its new listings.
        self.catalogue = sandbox_catalogue_market()
        self.interests = {p.name: list(p.interests) for p in self.catalogue.products}
        self.products = self.settings.products or [p.name for p in sandbox_market_config().products]
        self.audiences = [a.name for a in self.catalogue.audiences]
        unknown = [product for product in self.products if product not in self.interests]
        if unknown:
            raise ValueError(f"orchestrator.money.products names products the account's catalogue lacks: "
                             f"{', '.join(unknown)} (it lists {', '.join(self.interests)})")

    async def close(self) -> None:
        await self.safety.close()

    # ---- emergency stop --------------------------------------------------------------------
    async def pause_everything(self) -> list[str]:
        """Pause every money-phase campaign live on the platform (own connection, so it never waits
        behind a driver's call); drivers stop opening windows until the stop is lifted."""
        self.stop_requested.set()
        paused = []
        async with McpPlatformConnector(self.settings.platform) as platform:
            for campaign_id in list(self.live):
                await platform.pause(campaign_id)
                paused.append(campaign_id)
        return paused

    # ---- a phase ---------------------------------------------------------------------------
    async def run_phase(self, run: RunHandle) -> str:
        """Phase 3's work for the run; returns "done", "rejected" (entry refused by an operator)
        or "interrupted" (the run is stopping)."""
        money = await self.store.load(run.run_id)
        ledger_campaign = self.settings.ledger_campaigns[0]
        gate = EntryGate(self.safety, self.settings.approval_poll_s)
        decision = await gate.enter(money, run, ledger_campaign, self._saver(money))
        if decision != "approved":
            return decision
        await run.set_state("running", "")
        async with McpPlatformConnector(self.settings.platform) as platform:
            for index in range(self.settings.campaigns):
                if run.stopping():
                    return "interrupted"
                if run.current_phase() != run.phase:
                    break  # the campaigns so far decided the phase: no more test campaigns
                record = self._record(money, run, index, ledger_campaign)
                stopped = False
                if record.status in FINISHED:
                    pass
                elif record.windows:  # under way when an earlier orchestrator process stopped
                    await self._recover(platform, money, record)
                else:
                    try:
                        await self._run_campaign(platform, money, run, record)
                    except EmergencyStopped:
                        stopped = True
                if record.campaign_id and not record.published:  # one that never went live taught nothing
                    await self._publish(run, record)
                    record.published = True
                    await self._save(money)
                    await run.episode_done()
                if stopped:
                    await self._wait_for_resume(run, ledger_campaign)
            money.reconciliation = await reconcile(platform, money)
            await self._save(money)
        logger.info("phase 3 campaigns done", extra={
            "run_id": run.run_id, "campaigns": len(money.campaigns),
            "unreserved_cents": money.reconciliation.unreserved_cents})
        return "done"

    def _saver(self, money: MoneyRunDocument) -> Save:
        async def save() -> None:
            await self._save(money)
        return save

    async def _save(self, money: MoneyRunDocument) -> None:
        async with self.save_lock:
            await self.store.save(money, time.time())

    def _record(self, money: MoneyRunDocument, run: RunHandle, index: int, ledger: str) -> CampaignRecord:
        if (found := money.campaign(index, run.phase, run.entry.attempt)) is not None:
            return found
        record = CampaignRecord(index=index, phase=run.phase, attempt=run.entry.attempt,
                                ledger_campaign=ledger, product=self.products[index % len(self.products)])
        money.campaigns.append(record)
        return record

    async def _wait_for_resume(self, run: RunHandle, ledger_campaign: str) -> None:
        await run.set_state("awaiting_approval", "emergency stop in force: waiting for an approved resume")
        while not run.stopping():
            status = await self.safety.budget_status(ledger_campaign, run.phase)
            if not status.emergency_stopped:
                self.stop_requested.clear()
                await run.set_state("running", "")
                return
            await asyncio.sleep(self.settings.approval_poll_s)

    # ---- one campaign ----------------------------------------------------------------------
    async def _run_campaign(self, platform: McpPlatformConnector, money: MoneyRunDocument, run: RunHandle,
                            record: CampaignRecord, advance: Advance | None = None,
                            step_up: StepUp | None = None) -> None:
        cfg = self.settings
        advance = advance or _advancer(platform)
        status = await self.safety.budget_status(record.ledger_campaign, run.phase)
        max_bid = record.max_bid = status.max_bid
        if max_bid < BID_RANGE[1]:
            logger.warning("the ledger's maximum bid is below the policy's bid range: its bids above it"
                           " are clipped", extra={"run_id": run.run_id, "phase": run.phase,
                                                  "max_bid": max_bid, "policy_bid_max": BID_RANGE[1]})
        budget_cap = cfg.daily_budget_max if run.phase == PHASE_REAL_TESTING else cfg.scaled_budget_max
        view = advertiser_view(self.catalogue, record.product, budget_cap, cfg.target_roas, max_bid)
        hours_total = cfg.campaign_days * HOURS_PER_DAY
        hour = await self._align(platform, advance)
        first = platform_observation(None, None, hour, hours_total, 0, self.audiences, view, ())
        budget_range = (cfg.daily_budget_min, cfg.daily_budget_max)
        current = decide(run.agent, first, self.audiences, budget_range, max_bid)
        record.bids_clipped += current.bid_clipped
        live: CampaignSettings | None = None
        report: CampaignReport | None = None
        windows = hours_total // cfg.step_hours
        try:
            for window in range(windows):
                if self.stop_requested.is_set():
                    raise EmergencyStopped()
                if live is None or current.creative != live.creative:
                    current = await self._creative(money, run, record, current, live)
                    if live is None and not record.creative_approved:
                        record.status, record.detail = "refused", "no creative format passed validation"
                        return
                reported_today = sum(_spend_today(report, record, hour))
                granted = await self._reserve(money, run, record, window, hour, current, reported_today)
                if not granted:
                    break
                live = await self._apply(platform, money, record, current, live)
                if self.stop_requested.is_set():
                    # A stop arrived while the window opened: nothing may spend after it.
                    await self._pause(platform, record)
                    raise EmergencyStopped()
                hour = await advance(cfg.step_hours)
                report = await platform.fetch_report(record.campaign_id)
                await self._commit_reported(money, record, report)
                done = (window + 1) * cfg.step_hours
                observation = platform_observation(report, live, hour, hours_total, done, self.audiences,
                                                   view, _spend_today(report, record, hour))
                current = decide(run.agent, observation, self.audiences, budget_range, max_bid)
                record.bids_clipped += current.bid_clipped
                if step_up is not None:
                    current = await step_up(record, report, live, current)
        except EmergencyStopped:
            await self._pause(platform, record)
            record.status, record.detail = "stopped", "paused by the emergency stop"
            await self._settle(platform, money, record, advance)
            raise
        except PlatformError as error:
            logger.error("platform failed during a phase-3 campaign; pausing it and settling",
                         extra={"run_id": run.run_id, "campaign": record.campaign_id, "error": str(error)})
            record.status, record.detail = "failed", f"platform failed: {error}"
            await self._save(money)
        if record.campaign_id:
            try:
                await self._pause(platform, record)
                if record.status == "active":
                    # Paused on the platform; what is left is committing the lagging reports. Only
                    # "active" means live (the stop drill looks for one to pause).
                    record.status = "settling"
                await self._settle(platform, money, record, advance)
            except PlatformError as error:
                # Its open windows stay uncommitted: the ledger expires them, the reconciliation
                # shows what the platform spent on them.
                logger.error("could not pause and settle a phase-3 campaign", extra={
                    "run_id": run.run_id, "campaign": record.campaign_id, "error": str(error)})
                record.status, record.detail = "failed", f"could not pause and settle: {error}"
        if record.status not in {"failed", "refused"}:
            record.status = "settled"
        await self._save(money)

    async def _recover(self, platform: McpPlatformConnector, money: MoneyRunDocument,
                       record: CampaignRecord) -> None:
        """End a campaign an earlier process left under way, with no new reservation: pause it and
        commit what the platform reports for its windows (reservations that expired meanwhile are
        still committed: the ledger records spend it did not hold)."""
        for entry in record.windows:
            if entry.pending:
                # Granted or not, the answer is now recorded; a grant is settled with the others.
                await self._ask_ledger(money.run_id, record, entry)
                await self._save(money)
        if not record.campaign_id and record.spec:
            # The create may or may not have been sent: the platform answers a repeated request id
            # with the campaign it created then (and the window's reservation covers a new one).
            campaign = await platform.create_campaign(CampaignSpec.model_validate(record.spec),
                                                      request_id=record.windows[0].key)
            record.campaign_id = campaign.campaign_id
        if record.campaign_id:
            await self._pause(platform, record)
            await self._settle(platform, money, record)
        record.status = "interrupted"
        record.detail = "the orchestrator stopped while the campaign ran: paused and settled on restart"
        logger.warning("phase-3 campaign recovered after a restart", extra={
            "run_id": money.run_id, "campaign": record.campaign_id, "index": record.index})
        await self._save(money)

    async def _align(self, platform: McpPlatformConnector, advance: Advance) -> int:
        """Start on a window boundary, so that no window spans two platform days."""
        hour = int((await platform.health())["hour"])
        gap = -hour % self.settings.step_hours
        return await advance(gap) if gap else hour

    async def _creative(self, money: MoneyRunDocument, run: RunHandle, record: CampaignRecord,
                        wanted: CampaignSettings, live: CampaignSettings | None) -> CampaignSettings:
        """Validate the wanted format first, then the others; keep the live one if none passes."""
        formats = [wanted.creative] + [c for c in CREATIVE_TYPES if c != wanted.creative]
        for creative_format in formats:
            creative = make_creative(record.product, self.interests.get(record.product, []), creative_format)
            verdict = await self.safety.validate_creative(record.ledger_campaign, run.phase,
                                                          creative.headline, creative.body, creative.scores)
            record.creative_scores = creative.scores
            if verdict.approved:
                record.creative_approved = True
                return keep_creative(wanted, creative_format)  # type: ignore[arg-type]
            record.creative_reasons = list(verdict.reasons)
            money.violations.append(ViolationRecord(at=time.time(), campaign_id=record.ledger_campaign,
                                                    rule="creative_rejected",
                                                    detail="; ".join(verdict.reasons)))
            if live is not None:
                break
        return keep_creative(wanted, live.creative) if live is not None else wanted

    async def _reserve(self, money: MoneyRunDocument, run: RunHandle, record: CampaignRecord, window: int,
                       hour: int, settings: CampaignSettings, reported_today: float) -> bool:
        key = reservation_key(run.run_id, record.ledger_campaign, run.phase, record.attempt, record.index,
                              window)
        entry = next((w for w in record.windows if w.key == key), None)
        if entry is None:
            amount = window_cap(self.settings.rules, settings.daily_budget, reported_today)
            entry = WindowRecord(key=key, day=hour // HOURS_PER_DAY, start_hour=hour,
                                 end_hour=hour + self.settings.step_hours, amount=amount, bid=settings.bid,
                                 daily_budget=settings.daily_budget)
            record.windows.append(entry)
        # Recorded before the ledger is asked: a process killed before its answer is saved leaves a
        # pending window that the restart asks about again under the same key (no dangling grant).
        entry.pending = True
        await self._save(money)
        answer = await self._ask_ledger(money.run_id, record, entry)
        if not answer.granted:
            money.violations.append(ViolationRecord(at=time.time(), campaign_id=record.ledger_campaign,
                                                    rule=answer.refused_by, detail=answer.reason))
            logger.warning("reservation refused; the platform call is not sent", extra={
                "run_id": run.run_id, "key": key, "refused_by": answer.refused_by, "reason": answer.reason})
            record.status = "refused"
            record.detail = f"reservation refused by {answer.refused_by}: {answer.reason}"
            await self._save(money)
            if answer.refused_by == "emergency_stop":
                raise EmergencyStopped()
            return False
        await self._save(money)
        return True

    async def _ask_ledger(self, run_id: str, record: CampaignRecord,
                          entry: WindowRecord) -> safety_pb2.ReserveSpendResponse:
        """ReserveSpend for the window's key; a key the ledger already decided gets its stored answer."""
        answer = await self.safety.reserve(record.ledger_campaign, record.phase, entry.amount, entry.key,
                                           episode_id(run_id, record.phase, record.attempt, record.index),
                                           run_id, entry.bid)
        entry.granted, entry.reservation_id = answer.granted, answer.reservation_id
        entry.refused_by, entry.reason = answer.refused_by, answer.reason
        entry.pending = False
        return answer

    async def _apply(self, platform: McpPlatformConnector, money: MoneyRunDocument, record: CampaignRecord,
                     wanted: CampaignSettings, live: CampaignSettings | None) -> CampaignSettings:
        """The window's platform calls, sent only after its reservation was granted."""
        if live is None:
            spec = CampaignSpec(name=f"gaelp-{record.ledger_campaign}-a{record.attempt}-{record.index}",
                                product=record.product,
                                daily_budget=wanted.daily_budget, bid=wanted.bid,
                                bid_strategy=wanted.bid_strategy, creative=wanted.creative,
                                audience=wanted.audience, audience_size=wanted.audience_size)
            hour = int((await platform.health())["hour"])
            record.spec, record.created_hour = spec.model_dump(), hour
            await self._save(money)
            campaign = await platform.create_campaign(spec, request_id=record.windows[0].key)
            record.campaign_id, record.status = campaign.campaign_id, "active"
            self.live[campaign.campaign_id] = _Live(campaign.campaign_id, money.run_id)
            await self._save(money)
            return wanted
        cid = record.campaign_id
        if wanted.daily_budget != live.daily_budget:
            await platform.update_budget(cid, wanted.daily_budget)
        if (wanted.bid, wanted.bid_strategy) != (live.bid, live.bid_strategy):
            await platform.update_bid(cid, wanted.bid, wanted.bid_strategy)
        if wanted.creative != live.creative:
            await platform.update_creative(cid, wanted.creative)
        if (wanted.audience, wanted.audience_size) != (live.audience, live.audience_size):
            await platform.update_audience(cid, wanted.audience, wanted.audience_size)
        return wanted

    async def _pause(self, platform: McpPlatformConnector, record: CampaignRecord) -> None:
        if record.campaign_id:
            await platform.pause(record.campaign_id)
            self.live.pop(record.campaign_id, None)

    async def _commit_reported(self, money: MoneyRunDocument, record: CampaignRecord,
                               report: CampaignReport) -> None:
        """Commit every granted window the report now covers to its end; that releases the rest."""
        changed = False
        for window in record.windows:
            reported = window.end_hour <= report.reported_through_hour
            if not window.granted or window.committed is not None or not reported:
                continue
            first, last = window.start_hour - record.created_hour, window.end_hour - record.created_hour
            spent = as_micros(sum(report.hourly_spend[max(first, 0):max(last, 0)]))
            try:
                answer = await self.safety.commit(window.reservation_id, spent, f"{window.key}:commit")
            except grpc.aio.AioRpcError as error:
                # Spend above the reservation is refused (and raised as a critical violation by the
                # ledger); the window stays open so the reconciliation shows it as unreserved.
                logger.error("commit refused", extra={"key": window.key, "spent": spent,
                                                      "error": error.details()})
                money.violations.append(ViolationRecord(at=time.time(), campaign_id=record.ledger_campaign,
                                                        rule="commit_refused", detail=str(error.details())))
                continue
            window.committed, window.released = answer.committed, answer.released
            changed = True
        record.spend, record.revenue = report.spend, report.revenue
        if changed:
            await self._save(money)

    async def _settle(self, platform: McpPlatformConnector, money: MoneyRunDocument,
                      record: CampaignRecord, advance: Advance | None = None) -> None:
        """The campaign is paused: let the platform's reports catch up, then commit the last windows."""
        advance = advance or _advancer(platform)
        end = max((w.end_hour for w in record.windows if w.granted), default=0)
        for _ in range(self.settings.settle_max_hours + 1):
            try:
                report = await platform.fetch_report(record.campaign_id)
            except PlatformError as error:  # a bad report: the next hour's may be good
                logger.warning("report refused while settling; trying the next hour",
                               extra={"campaign": record.campaign_id, "error": str(error)})
                await advance(1)
                continue
            if report.reported_through_hour >= end:
                await self._commit_reported(money, record, report)
                break
            await advance(1)
        else:
            record.detail = f"the platform's report did not reach hour {end}"
        record.budget = sum(w.daily_budget * (w.end_hour - w.start_hour) / HOURS_PER_DAY
                            for w in record.windows if w.granted)

    async def _publish(self, run: RunHandle, record: CampaignRecord) -> None:
        spend, revenue = record.committed, record.revenue
        roi = (revenue - spend) / spend if spend > 0 else 0.0
        summary = events_pb2.EpisodeSummary(
            run_id=run.run_id, episode_id=episode_id(run.run_id, run.phase, record.attempt, record.index),
            phase=run.phase, task=f"sandbox:{record.product}",  # type: ignore[arg-type]
            policy_version=max(run.policy_version(), 0), steps=len(record.windows),
            total_reward=revenue - spend, normalized_reward=roi, spend=spend, revenue=revenue,
            roas=revenue / spend if spend > 0 else 0.0, budget=record.budget,
            success=revenue > spend, failed=record.status == "failed", transfer=record.transfer,
            transfer_fine_tuned_score=record.transfer_fine_tuned_score,
            transfer_scratch_score=record.transfer_scratch_score,
            actor_id=f"{run.run_id}-platform",
        )
        await self.producer.send(EPISODES, run.run_id, run.entry.stamp(summary))


def _spend_today(report: CampaignReport | None, record: CampaignRecord, hour: int) -> list[float]:
    """Spend the platform reported for each hour of the platform day of `hour` the campaign ran (its
    sum is a lower bound of what the day spent)."""
    if report is None or record.created_hour < 0:
        return []
    day_start = hour // HOURS_PER_DAY * HOURS_PER_DAY
    first = max(day_start - record.created_hour, 0)
    return report.hourly_spend[first:]


def _advancer(platform: McpPlatformConnector) -> Advance:
    async def advance(hours: int) -> int:
        return await _advance(platform, hours)
    return advance


async def _advance(platform: McpPlatformConnector, hours: int) -> int:
    """Let `hours` platform hours pass (the sandbox's clock moves only when told to)."""
    return int((await platform.call("sandbox_advance_time", {"hours": hours}))["hour"])


PHASE_REAL_TESTING = common_pb2.PHASE_REAL_TESTING
