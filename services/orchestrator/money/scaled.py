"""Phase 4 on the ad platform: several campaigns at once under the run's one policy, budgets raised
in approved steps.

Each campaign is phase 3's campaign (MoneyPhases._run_campaign: every window reserved first,
commits from the lagging reports, release, settle), run concurrently with the others. They share
the platform's clock: platform hours pass only once every campaign still running waits for them,
so that no campaign's window lasts longer than the reservation that covers it.

A step-up multiplies the campaign's daily budget by budget_step_factor (at most scaled_budget_max)
when its level is sustained: at least one window at the current budget is fully reported (its
spend committed) and the campaign's reported ROI so far is positive. The reports carry revenue
only as a total, so the ROI is the campaign's, not one window's; committed windows are the ones the
lagging reports cover, so the level is judged on reported figures only. The raise is sent only
after an approved budget_increase (approvals.StepGate) and, like every budget change, only in a
window whose reservation (2x the new budget) was granted. Between step-ups the campaign keeps its
budget; the policy decides the bid, creative and audience.

Transfer (orchestrator.money.transfer): before its campaigns, the phase measures the transfer test
in the simulator (the phase-3 policy fine-tuned on the held-out products' model against a policy
trained there from scratch on the same env steps). The last `transfer.campaigns` campaigns sell the
held-out products with the fine-tuned policy and are flagged transfer; their episodes carry both
scores. The fine-tuned weights live in this process only: a restart that finds campaigns still to
start measures the transfer again (seeded) and records the new figures.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from gaelp.config.sections.training import TrainingSettings
from gaelp.sim.market.config import HOURS_PER_DAY
from gaelp.sim.platform.connector import CampaignReport
from gaelp.sim.platform.mcp_client import McpPlatformConnector
from orchestrator.evaluation import RandomActionAgent
from orchestrator.money.approvals import EntryGate, StepGate
from orchestrator.money.driver import (
    FINISHED,
    Advance,
    EmergencyStopped,
    MoneyPhases,
    RunHandle,
    StepUp,
    _advance,
)
from orchestrator.money.policy_io import CampaignSettings
from orchestrator.money.reconciliation import reconcile
from orchestrator.money.records import CampaignRecord, MoneyRunDocument
from orchestrator.money.transfer import held_out_products, measure_transfer

logger = logging.getLogger(__name__)


class SharedClock:
    """The platform's clock for campaigns that run at the same time: a campaign asking for hours
    waits until every member waits, then the clock moves to the earliest hour asked for."""

    def __init__(self, platform: McpPlatformConnector, members: int) -> None:
        self.platform = platform
        self.members = members
        self.hour = -1
        self.waiting: list[tuple[int, asyncio.Future[int]]] = []

    def member(self) -> Advance:
        async def advance(hours: int) -> int:
            if self.hour < 0:
                self.hour = int((await self.platform.health())["hour"])
            future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            self.waiting.append((self.hour + hours, future))
            await self._move()
            return await future
        return advance

    async def leave(self) -> None:
        self.members -= 1
        await self._move()

    async def _move(self) -> None:
        while self.waiting and len(self.waiting) >= self.members:
            target = min(t for t, _ in self.waiting)
            try:
                if target > self.hour:
                    self.hour = await _advance(self.platform, target - self.hour)
            except Exception as error:  # every waiting campaign learns of it, none waits forever
                for _, future in self.waiting:
                    future.set_exception(error)
                self.waiting = []
                return
            ready = [f for t, f in self.waiting if t <= self.hour]
            self.waiting = [(t, f) for t, f in self.waiting if t > self.hour]
            for future in ready:
                future.set_result(self.hour)


class ScaledPhase:
    def __init__(self, phases: MoneyPhases, training: TrainingSettings,
                 curriculum_levels: Sequence[int]) -> None:
        self.phases = phases
        self.settings = phases.settings
        self.training = training
        self.curriculum_levels = list(curriculum_levels)
        self.held_out = held_out_products(self.curriculum_levels)

    async def run_phase(self, run: RunHandle, source: Any, random_actions: bool, seed: int) -> str:
        """Phase 4's work for the run; "done", "rejected" (its money entry refused) or "interrupted".
        source: the run's policy (the agent phase 3 ended with); random_actions: a smoke run, whose
        campaigns act at random (the transfer test still trains and scores its policy networks)."""
        phases, cfg = self.phases, self.settings
        money = await phases.store.load(run.run_id)
        ledger_campaign = cfg.ledger_campaigns[0]
        save = phases._saver(money)
        records = [self._record(money, run, index, ledger_campaign) for index in range(cfg.scaled_campaigns)]
        transfer_run = run
        if any(r.transfer and r.status == "planned" and not r.windows for r in records):
            fine_tuned = await self._measure_transfer(money, run, source, seed)
            transfer_run = replace(run, agent=RandomActionAgent(fine_tuned) if random_actions else fine_tuned)
        entry = EntryGate(phases.safety, cfg.approval_poll_s)
        decision = await entry.enter(money, run, ledger_campaign, save)
        if decision != "approved":
            return decision
        await run.set_state("running", "")
        steps = StepGate(phases.safety, cfg.approval_poll_s)
        async with McpPlatformConnector(cfg.platform) as clock_platform:
            for record in records:  # under way when an earlier orchestrator process stopped: ended first,
                if record.status not in FINISHED and record.windows:  # alone, as it moves the clock
                    await phases._recover(clock_platform, money, record)
            todo = [r for r in records if r.status not in FINISHED]
            clock = SharedClock(clock_platform, len(todo))
            # Every campaign ends (paused, settled) even when another fails; the first failure is
            # raised once they all have.
            outcomes = await asyncio.gather(*(
                self._campaign(money, transfer_run if r.transfer else run, r, clock, steps, ledger_campaign)
                for r in todo), return_exceptions=True)
            for record in records:
                if record.campaign_id and not record.published:
                    await phases._publish(run, record)
                    record.published = True
                    await phases._save(money)
                    await run.episode_done()
            failures = [o for o in outcomes if isinstance(o, BaseException)]
            if failures:
                raise failures[0]
            if "stopped" in outcomes:
                await phases._wait_for_resume(run, ledger_campaign)
            if run.stopping():
                return "interrupted"
            money.reconciliation = await reconcile(clock_platform, money)
            await phases._save(money)
        logger.info("phase 4 campaigns done", extra={
            "run_id": run.run_id, "campaigns": len(records),
            "unreserved_cents": money.reconciliation.unreserved_cents})
        return "done"

    def _record(self, money: MoneyRunDocument, run: RunHandle, index: int, ledger: str) -> CampaignRecord:
        """The campaign's record; the last transfer.campaigns sell the held-out products."""
        if (found := money.campaign(index, run.phase, run.entry.attempt)) is not None:
            return found
        first_transfer = self.settings.scaled_campaigns - self.settings.transfer.campaigns
        transfer = index >= first_transfer and bool(self.held_out)
        products = [p.name for p in self.held_out] if transfer else self.phases.products
        record = CampaignRecord(index=index, phase=run.phase, attempt=run.entry.attempt,
                                ledger_campaign=ledger, transfer=transfer,
                                product=products[(index - first_transfer if transfer else index)
                                                 % len(products)])
        money.campaigns.append(record)
        return record

    async def _measure_transfer(self, money: MoneyRunDocument, run: RunHandle, source: Any, seed: int) -> Any:
        """The transfer test in the simulator (off the event loop: it trains two policies)."""
        await run.set_state("running",
                            "phase 4: measuring transfer to the held-out products in the simulator")
        started = time.monotonic()
        result = await asyncio.to_thread(measure_transfer, source, self.training, self.settings.transfer,
                                         self.curriculum_levels, seed)
        money.transfer = result.record.model_copy(update={"seconds": time.monotonic() - started})
        for record in money.campaigns:
            if record.transfer and (record.phase, record.attempt) == (run.phase, run.entry.attempt):
                record.transfer_fine_tuned_score = result.record.fine_tuned_score
                record.transfer_scratch_score = result.record.scratch_score
        await self.phases._save(money)
        logger.info("phase-4 transfer measured", extra={"run_id": run.run_id, **money.transfer.model_dump()})
        return result.fine_tuned

    async def _campaign(self, money: MoneyRunDocument, run: RunHandle, record: CampaignRecord,
                        clock: SharedClock, steps: StepGate, ledger_campaign: str) -> str:
        """One campaign on its own connection; leaves the clock however it ends."""
        phases = self.phases
        try:
            async with McpPlatformConnector(self.settings.platform) as platform:
                step_up = self._step_up(money, run, steps, ledger_campaign)
                await phases._run_campaign(platform, money, run, record, clock.member(), step_up)
                return record.status
        except EmergencyStopped:
            return "stopped"
        finally:
            await clock.leave()

    def _step_up(self, money: MoneyRunDocument, run: RunHandle, steps: StepGate,
                 ledger_campaign: str) -> StepUp:
        cfg = self.settings

        async def step_up(record: CampaignRecord, report: CampaignReport, live: CampaignSettings,
                          wanted: CampaignSettings) -> CampaignSettings:
            level = live.daily_budget
            keep = replace(wanted, daily_budget=level)
            if len(record.windows) >= cfg.campaign_days * HOURS_PER_DAY // cfg.step_hours:
                return keep  # the campaign's last window is over: no budget to raise
            raised = min(round(level * cfg.budget_step_factor, 2), cfg.scaled_budget_max)
            if raised <= level or not _sustained(record, report, level):
                return keep
            # What one more platform day may spend above the current level (the platform's rule).
            amount = math.ceil(round(cfg.rules.overdelivery_factor * (raised - level) * 100, 6)) / 100
            subject = f"a{record.attempt}:c{record.index}:{level:.2f}->{raised:.2f}"
            decision = await steps.ask(
                money, run, ledger_campaign, subject, amount,
                f"run {run.run_id} phase-4 campaign {record.index} ({record.campaign_id}): reported ROI"
                f" {(report.revenue - report.spend) / report.spend:+.1%} at {level:.2f}/day; raise to"
                f" {raised:.2f}/day", self.phases._saver(money))
            logger.info("phase-4 budget step-up %s", decision, extra={
                "run_id": run.run_id, "campaign": record.campaign_id, "from": level, "to": raised})
            return replace(wanted, daily_budget=raised) if decision == "approved" else keep

        return step_up


def _sustained(record: CampaignRecord, report: CampaignReport, level: float) -> bool:
    """A window at this budget is fully reported and the campaign's reported ROI is positive."""
    reported_at_level = any(w.committed is not None and w.daily_budget == level for w in record.windows)
    return reported_at_level and report.spend > 0 and report.revenue > report.spend
