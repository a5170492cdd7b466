"""The platform sandbox's market and campaign book: what the sandbox server exposes over MCP.

It reuses the simulator's market mechanics with different parameters (the sim-to-real gap a phase-3
agent must survive) and behaves like a real platform where that matters: reports arrive with a
delay, calls fail transiently now and then, and budgets follow ad-platform semantics (like Google
Ads: one day may spend up to 2x the daily budget, a month never more than 30.4x).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from gaelp.sim.market.config import (
    BID_STRATEGIES,
    CREATIVE_TYPES,
    HOURS_PER_DAY,
    MarketConfig,
    Product,
    curriculum_level,
)
from gaelp.sim.market.core import CampaignActions, MarketCore
from gaelp.sim.platform.connector import (
    AccountSpend,
    Campaign,
    CampaignReport,
    CampaignSpec,
    PlatformError,
    TransientPlatformError,
)


def sandbox_market_config() -> MarketConfig:
    """Many personas and adaptive competitors, with rates and prices unlike the training levels."""
    config = curriculum_level("many_personas")
    personas = [
        persona.model_copy(update={"base_ctr": persona.base_ctr * 0.8, "base_cvr": persona.base_cvr * 1.1})
        for persona in config.personas
    ]
    return config.model_copy(
        update={
            "name": "sandbox",
            "personas": personas,
            "competitor_median_cpm": 11.0,
            "competitor_spread": 0.7,
            "competitor_adaptation": 0.3,
            "mean_conversion_delay_hours": 4.0,
            "attribution_window_hours": 24,
            "traffic_volatility": 0.2,
            "max_daily_budget": 1e9,  # the sandbox applies its own budget rules
        }
    )


def new_listings() -> list[Product]:
    """Products the sandbox account lists beyond those of its logged history (sandbox_market_config,
    phase 2's logs) and of the training simulator's world: phase 4's transfer test sells them."""
    return [
        Product(name="yoga_mat", revenue_per_conversion=50.0, interests=["fitness", "health", "home"]),
        Product(name="concert_tickets", revenue_per_conversion=70.0,
                interests=["music", "fashion", "travel"]),
    ]


def sandbox_catalogue_market() -> MarketConfig:
    """The market the sandbox platform serves: its logged market's products and the new listings."""
    config = sandbox_market_config()
    return config.model_copy(update={"products": [*config.products, *new_listings()]})


class SandboxConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    market: MarketConfig = Field(default_factory=sandbox_catalogue_market)
    report_delay_hours: int = Field(3, ge=0, description="hours before an hour's results are reported")
    transient_error_rate: float = Field(
        0.02, ge=0.0, lt=1.0, description="share of calls failing transiently"
    )
    overdelivery_factor: float = Field(2.0, ge=1.0, description="one day may spend this x the daily budget")
    monthly_budget_factor: float = Field(30.4, gt=0.0, description="a month spends at most this x the budget")
    days_per_month: int = Field(30, ge=1)
    max_daily_budget: float = Field(1000.0, gt=0.0)
    max_campaigns: int = Field(100, ge=1)


@dataclass
class _HourRow:
    hour: int
    impressions: int
    clicks: int
    conversions: int
    spend: float
    revenue: float


@dataclass
class _CampaignState:
    campaign: Campaign
    product_index: int
    core: MarketCore
    history: list[_HourRow] = field(default_factory=list)
    spend_by_month: dict[int, float] = field(default_factory=dict)


class SandboxPlatform:
    """A simulated ad platform; one instance per sandbox server process."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self.hour = 0
        self._rng = np.random.default_rng(self.config.seed)
        self._campaigns: dict[str, _CampaignState] = {}
        self._by_request: dict[str, str] = {}
        self._ids = itertools.count(1)
        self._forced_failures = 0
        self.malformed_reports = 0  # get_report answers the server malforms (drills and tests)
        # Every operation the platform received (failed attempts included), for audits and tests.
        self.calls: list[dict[str, object]] = []
        self._products = {p.name: i for i, p in enumerate(self.config.market.products)}
        self._audiences = {a.name: i for i, a in enumerate(self.config.market.audiences)}

    # Faults
    def fail_next(self, calls: int) -> None:
        """Make the next `calls` operations fail transiently (for drills and tests)."""
        self._forced_failures = calls

    def _received(self, operation: str, campaign_id: str, **arguments: object) -> None:
        self.calls.append({"hour": self.hour, "operation": operation, "campaign_id": campaign_id,
                           "arguments": arguments})

    def _maybe_fail(self, operation: str) -> None:
        if self._forced_failures > 0:
            self._forced_failures -= 1
            raise TransientPlatformError(operation, "backend temporarily unavailable", "unavailable")
        if self._rng.random() < self.config.transient_error_rate:
            raise TransientPlatformError(operation, "rate limit exceeded, retry later", "rate_limited")

    # Campaign operations
    def create_campaign(self, spec: CampaignSpec, request_id: str) -> Campaign:
        self._received("create_campaign", "", request_id=request_id, **spec.model_dump())
        self._maybe_fail("create_campaign")
        if request_id in self._by_request:  # a retried create returns the first one
            return self._campaigns[self._by_request[request_id]].campaign
        if len(self._campaigns) >= self.config.max_campaigns:
            raise PlatformError("create_campaign", "campaign limit reached", "resource_exhausted")
        if spec.product not in self._products:
            raise PlatformError("create_campaign", f"unknown product {spec.product!r}", "invalid_argument")
        self._check_audience("create_campaign", spec.audience)
        self._check_budget("create_campaign", spec.daily_budget)
        campaign_id = f"sandbox-{next(self._ids)}"
        core = MarketCore(self.config.market, 1, seed=int(self._rng.integers(2**31)))
        product = self._products[spec.product]
        core.reset(product=np.array([product]))
        core.hour_index = self.hour % HOURS_PER_DAY
        campaign = Campaign(campaign_id=campaign_id, status="active", **spec.model_dump())
        self._campaigns[campaign_id] = _CampaignState(campaign=campaign, product_index=product, core=core)
        self._by_request[request_id] = campaign_id
        return campaign

    def _check_audience(self, operation: str, audience: str) -> None:
        if audience not in self._audiences:
            raise PlatformError(operation, f"unknown audience {audience!r}", "invalid_argument")

    def _check_budget(self, operation: str, daily_budget: float) -> None:
        if not 0 < daily_budget <= self.config.max_daily_budget:
            raise PlatformError(
                operation, f"daily budget must be in (0, {self.config.max_daily_budget}]", "invalid_argument"
            )

    def _get(self, operation: str, campaign_id: str, **arguments: object) -> _CampaignState:
        self._received(operation, campaign_id, **arguments)
        self._maybe_fail(operation)
        state = self._campaigns.get(campaign_id)
        if state is None:
            raise PlatformError(operation, f"no campaign {campaign_id!r}", "not_found")
        return state

    def _update(self, operation: str, campaign_id: str, **changes: object) -> Campaign:
        state = self._get(operation, campaign_id, **changes)
        state.campaign = Campaign.model_validate(state.campaign.model_dump() | changes)
        return state.campaign

    def update_bid(self, campaign_id: str, bid: float, bid_strategy: str | None = None) -> Campaign:
        if bid <= 0 or (bid_strategy is not None and bid_strategy not in BID_STRATEGIES):
            raise PlatformError(
                "update_bid", "bid must be > 0 and strategy one of cpc/cpm/cpa", "invalid_argument"
            )
        changes: dict[str, object] = {"bid": bid}
        if bid_strategy is not None:
            changes["bid_strategy"] = bid_strategy
        return self._update("update_bid", campaign_id, **changes)

    def update_budget(self, campaign_id: str, daily_budget: float) -> Campaign:
        self._check_budget("update_budget", daily_budget)
        return self._update("update_budget", campaign_id, daily_budget=daily_budget)

    def update_creative(self, campaign_id: str, creative: str) -> Campaign:
        if creative not in CREATIVE_TYPES:
            raise PlatformError(
                "update_creative", f"creative must be one of {CREATIVE_TYPES}", "invalid_argument"
            )
        return self._update("update_creative", campaign_id, creative=creative)

    def update_audience(self, campaign_id: str, audience: str, audience_size: float) -> Campaign:
        self._check_audience("update_audience", audience)
        if not 0 < audience_size <= 1:
            raise PlatformError("update_audience", "audience size must be in (0, 1]", "invalid_argument")
        return self._update("update_audience", campaign_id, audience=audience, audience_size=audience_size)

    def pause(self, campaign_id: str) -> Campaign:
        return self._update("pause", campaign_id, status="paused")

    def resume(self, campaign_id: str) -> Campaign:
        return self._update("resume", campaign_id, status="active")

    def fetch_report(self, campaign_id: str) -> CampaignReport:
        state = self._get("fetch_report", campaign_id)
        through = max(self.hour - self.config.report_delay_hours, 0)
        rows = [row for row in state.history if row.hour < through]
        return CampaignReport(
            campaign_id=campaign_id,
            reported_through_hour=through,
            impressions=sum(r.impressions for r in rows),
            clicks=sum(r.clicks for r in rows),
            conversions=sum(r.conversions for r in rows),
            spend=sum(r.spend for r in rows),
            revenue=sum(r.revenue for r in rows),
            hourly_spend=[r.spend for r in rows],
        )

    def account_spend(self) -> AccountSpend:
        """Billing's view: actual spend, not delayed like reports."""
        self._maybe_fail("account_spend")
        day, month = self.hour // HOURS_PER_DAY, self._month(self.hour)
        by_campaign = {cid: sum(r.spend for r in s.history) for cid, s in self._campaigns.items()}
        return AccountSpend(
            total_spend=sum(by_campaign.values()),
            spend_today=sum(
                r.spend for s in self._campaigns.values() for r in s.history if r.hour // HOURS_PER_DAY == day
            ),
            spend_this_month=sum(s.spend_by_month.get(month, 0.0) for s in self._campaigns.values()),
            by_campaign=by_campaign,
        )

    def spend_log(self) -> dict[str, dict[int, float]]:
        """The platform's own spend record: per campaign, per platform day (hour // 24)."""
        log: dict[str, dict[int, float]] = {}
        for campaign_id, state in self._campaigns.items():
            days = log.setdefault(campaign_id, {})
            for row in state.history:
                day = row.hour // HOURS_PER_DAY
                days[day] = days.get(day, 0.0) + row.spend
        return log

    # Time
    def _month(self, hour: int) -> int:
        return hour // (HOURS_PER_DAY * self.config.days_per_month)

    def advance(self, hours: int) -> int:
        """Simulate `hours` platform hours for every campaign; returns the new platform hour."""
        for _ in range(hours):
            if self.hour % HOURS_PER_DAY == 0 and self.hour > 0:
                for state in self._campaigns.values():
                    # A new day: daily spend restarts; weekday, traffic and competitors move on.
                    state.core.reset(product=np.array([state.product_index]))
            for state in self._campaigns.values():
                self._serve_hour(state)
            self.hour += 1
        return self.hour

    def _serve_hour(self, state: _CampaignState) -> None:
        campaign, core = state.campaign, state.core
        month = self._month(self.hour)
        month_spend = state.spend_by_month.get(month, 0.0)
        budget = campaign.daily_budget
        spent_today = float(core.spent_today[0])
        # Pacing like Google Ads: a day spends its budget plus what earlier days of the month left
        # unspent, at most 2x the budget, and the month never more than 30.4x.
        day_of_month = (self.hour // HOURS_PER_DAY) % self.config.days_per_month
        catch_up = (day_of_month + 1) * budget - (month_spend - spent_today)
        cap = min(
            self.config.overdelivery_factor * budget,
            max(budget, catch_up),
            spent_today + max(self.config.monthly_budget_factor * budget - month_spend, 0.0),
        )
        if campaign.status == "paused":
            cap = 0.0  # pending conversions of earlier clicks still arrive
        outcome = core.step(
            CampaignActions(
                creative=np.array([CREATIVE_TYPES.index(campaign.creative)]),
                audience=np.array([self._audiences[campaign.audience]]),
                bid_strategy=np.array([BID_STRATEGIES.index(campaign.bid_strategy)]),
                daily_budget=np.array([cap]),
                bid=np.array([campaign.bid]),
                audience_size=np.array([campaign.audience_size]),
            )
        )
        spend = float(outcome.spend[0])
        state.spend_by_month[month] = month_spend + spend
        state.history.append(
            _HourRow(
                hour=self.hour,
                impressions=int(outcome.impressions[0]),
                clicks=int(outcome.clicks[0]),
                conversions=int(outcome.conversions[0]),
                spend=spend,
                revenue=float(outcome.revenue[0]),
            )
        )

    def health(self) -> dict[str, object]:
        return {"status": "ok", "platform": "sandbox", "hour": self.hour, "campaigns": len(self._campaigns)}
