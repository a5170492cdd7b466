"""The market dynamics of N campaigns stepped together, one hour per step.

All campaigns share the hour of day (episodes have a fixed length and reset together), so the
state is a set of (N,) and (N, P) arrays and a scalar hour. Per step: traffic per persona, reach
through the chosen audience, CTR/CVR from creative x persona x audience fit, an aggregate auction,
Poisson counts of impressions, clicks and delayed conversions, and a hard daily budget cap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gaelp.sim.market.auction import auction_outcome
from gaelp.sim.market.config import HOURS_PER_DAY, MarketConfig
from gaelp.sim.market.world import WorldTables, audience_size_quality, build_world


@dataclass
class CampaignActions:
    """Batched actions, already validated: ints for choices, floats for amounts (all shape (N,))."""

    creative: np.ndarray
    audience: np.ndarray
    bid_strategy: np.ndarray  # 0 CPC, 1 CPM, 2 CPA
    daily_budget: np.ndarray
    bid: np.ndarray
    audience_size: np.ndarray


@dataclass
class HourOutcome:
    """What happened to each campaign in the hour just simulated (all shape (N,))."""

    impressions: np.ndarray
    clicks: np.ndarray
    conversions: np.ndarray
    spend: np.ndarray
    revenue: np.ndarray
    win_rate: np.ndarray
    price_cpm: np.ndarray
    requested_budget: np.ndarray
    budget: np.ndarray


@dataclass
class ExpectedRates:
    """Expected per-impression rates of an action (shape (N,)); what the oracle knows."""

    opportunities: np.ndarray
    ctr: np.ndarray
    cvr: np.ndarray
    value_per_impression: np.ndarray


class MarketCore:
    def __init__(self, config: MarketConfig, num_campaigns: int, seed: int | None = None) -> None:
        self.config = config
        self.world: WorldTables = build_world(config)
        self.num_campaigns = num_campaigns
        self.rng = np.random.default_rng(seed)
        n, p = num_campaigns, self.world.num_personas
        window = config.attribution_window_hours
        q = np.exp(-1.0 / config.mean_conversion_delay_hours)
        # Geometric delay in whole hours, truncated at the attribution window (the rest is lost).
        self.delay_kernel = (1.0 - q) * q ** np.arange(window)
        self.hour_index = 0
        self.product = np.zeros(n, dtype=np.int64)
        self.product_value = np.zeros(n)
        self.weekday = np.zeros(n, dtype=np.int64)
        self.day_of_year = np.zeros(n)
        self.season = np.ones(n)
        self.traffic = np.zeros((HOURS_PER_DAY, n, p))  # ad opportunities per hour and persona
        self._persona_ones = np.ones(p)
        self.persona_cvr = np.zeros((n, p))
        self.log_competitor_median = np.zeros(n)
        self.ctr_drift = np.ones(n)
        self.pctr_bias = np.ones(n)
        self.pending_conversions = np.zeros((n, HOURS_PER_DAY))
        self.spent_today = np.zeros(n)
        self.totals = {
            name: np.zeros(n) for name in ("impressions", "clicks", "conversions", "spend", "revenue")
        }

    def reset(self, seed: int | None = None, product: np.ndarray | None = None) -> None:
        """Start a new day with a freshly drawn product (unless given), weekday and market."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        cfg, world, n = self.config, self.world, self.num_campaigns
        rng = self.rng
        self.hour_index = 0
        drawn = rng.integers(0, len(cfg.products), size=n)
        self.product = drawn if product is None else np.asarray(product, dtype=np.int64)
        self.product_value = world.product_value[self.product]
        self.weekday = rng.integers(0, 7, size=n)
        self.day_of_year = rng.uniform(0.0, 365.0, size=n)
        self.season = 1.0 + cfg.seasonality_amplitude * np.sin(2 * np.pi * self.day_of_year / 365.0)
        weekday_factor = world.weekday_activity.T[self.weekday]  # (N, P)
        base = (
            cfg.opportunities_per_hour * world.persona_share[None, :] * weekday_factor * self.season[:, None]
        )
        self.traffic = np.ascontiguousarray(
            world.hourly_activity.T[:, None, :] * base[None, :, :]
        )  # (24, N, P)
        self.persona_cvr = world.product_cvr[self.product]
        self.log_competitor_median = np.full(n, np.log(cfg.competitor_median_cpm))
        self.ctr_drift = np.ones(n)
        self.pctr_bias = np.exp(cfg.pctr_noise * rng.standard_normal(n))
        self.pending_conversions.fill(0.0)
        self.spent_today.fill(0.0)
        for total in self.totals.values():
            total.fill(0.0)

    def expected_rates(
        self, creative: np.ndarray, audience: np.ndarray, audience_size: np.ndarray, hour: int
    ) -> ExpectedRates:
        """True expected reach, CTR, CVR and value per impression of an action at an hour."""
        reach = self.traffic[hour] * self.world.audience_reach[audience] * audience_size[:, None]
        quality = audience_size_quality(audience_size) * self.ctr_drift
        clicks_p = reach * self.world.click_rate[creative, audience]
        # Row sums as mat-vec products: numpy's axis-1 reductions are slow on narrow arrays.
        ones = self._persona_ones
        opportunities = reach @ ones
        click_rate = clicks_p @ ones
        conversion_rate = (clicks_p * self.persona_cvr) @ ones
        ctr = click_rate / np.maximum(opportunities, 1e-12) * quality
        lift = audience_size_quality(audience_size) * self.world.creative_cvr_lift[creative]
        cvr = np.minimum(conversion_rate / np.maximum(click_rate, 1e-12) * lift, 1.0)
        return ExpectedRates(
            opportunities=opportunities, ctr=ctr, cvr=cvr, value_per_impression=ctr * cvr * self.product_value
        )

    def step(self, actions: CampaignActions) -> HourOutcome:
        cfg, rng, hour = self.config, self.rng, self.hour_index
        n = self.num_campaigns
        rates = self.expected_rates(actions.creative, actions.audience, actions.audience_size, hour)
        if cfg.traffic_volatility > 0:
            volume = rates.opportunities * np.exp(
                cfg.traffic_volatility * rng.standard_normal(n) - 0.5 * cfg.traffic_volatility**2
            )
        else:
            volume = rates.opportunities
        # What the platform converts a CPC/CPA bid into: its own (possibly biased) CTR/CVR estimate.
        pctr = rates.ctr * self.pctr_bias
        # CPC: bid x pCTR x 1000; CPM: the bid itself; CPA: bid x pCTR x CVR x 1000.
        per_mille = np.where(
            actions.bid_strategy == 1,
            1.0,
            pctr * np.where(actions.bid_strategy == 2, rates.cvr, 1.0) * 1000.0,
        )
        bid_cpm = actions.bid * per_mille
        win, price_cpm = auction_outcome(
            bid_cpm,
            self.log_competitor_median,
            cfg.competitor_spread,
            cfg.reserve_cpm,
            second_price=cfg.auction == "second_price",
            competition=cfg.competition,
        )
        requested = actions.daily_budget
        budget = np.minimum(requested, cfg.max_daily_budget)
        remaining = np.maximum(budget - self.spent_today, 0.0)
        # Pacing cap: the platform stops serving once the day's budget is used up.
        affordable = np.floor(remaining * 1000.0 / price_cpm)
        impressions = np.minimum(rng.poisson(volume * win).astype(np.float64), affordable)
        spend = np.minimum(impressions * price_cpm / 1000.0, remaining)
        clicks = np.minimum(rng.poisson(impressions * rates.ctr).astype(np.float64), impressions)
        horizon = min(len(self.delay_kernel), HOURS_PER_DAY - hour)
        self.pending_conversions[:, hour : hour + horizon] += (clicks * rates.cvr)[
            :, None
        ] * self.delay_kernel[None, :horizon]
        conversions = rng.poisson(self.pending_conversions[:, hour]).astype(np.float64)
        revenue = conversions * self.product_value
        self.spent_today += spend
        for name, value in (
            ("impressions", impressions),
            ("clicks", clicks),
            ("conversions", conversions),
            ("spend", spend),
            ("revenue", revenue),
        ):
            self.totals[name] += value
        self._evolve_market(win, volume)
        self.hour_index += 1
        return HourOutcome(
            impressions=impressions,
            clicks=clicks,
            conversions=conversions,
            spend=spend,
            revenue=revenue,
            win_rate=win,
            price_cpm=price_cpm,
            requested_budget=requested,
            budget=budget,
        )

    def _evolve_market(self, win: np.ndarray, volume: np.ndarray) -> None:
        cfg, n = self.config, self.num_campaigns
        if cfg.competition and cfg.competitor_adaptation > 0:
            # Competitors raise their bids when we take more than their target share, and back off
            # when we take less; weighted by how much of the market we actually contested.
            contested = (volume > 0).astype(np.float64)
            self.log_competitor_median += (
                cfg.competitor_adaptation * 0.2 * (win - cfg.competitor_target_win_rate) * contested
            )
        if cfg.drift > 0:
            self.log_competitor_median += cfg.drift * self.rng.standard_normal(n)
            self.ctr_drift *= np.exp(cfg.drift * self.rng.standard_normal(n))

    @property
    def episode_done(self) -> bool:
        return self.hour_index >= self.config.episode_length
