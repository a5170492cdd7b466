"""The 128-feature observation, in the groups of docs/architecture.md ("The ad action").

Layout (column ranges): market context 0-15, performance history 16-47, demographics 48-71,
temporal 72-83, budget state 84-99, interactions 100-127. Personas beyond 8 and audiences beyond 6
are not shown individually (their share still counts in the aggregates).
"""

from __future__ import annotations

import numpy as np

from gaelp.sim.market.config import BID_STRATEGIES, CREATIVE_TYPES
from gaelp.sim.market.core import MarketCore
from gaelp.sim.market.spaces import OBSERVATION_BOUND, OBSERVATION_SIZE
from gaelp.sim.market.tracking import EpisodeTracker

MAX_PERSONAS_SHOWN = 8
MAX_AUDIENCES_SHOWN = 6
FEATURE_GROUPS: dict[str, tuple[int, int]] = {
    "market": (0, 16),
    "performance": (16, 48),
    "demographics": (48, 72),
    "temporal": (72, 84),
    "budget": (84, 100),
    "interactions": (100, 128),
}


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return numerator / np.maximum(denominator, 1e-9)


def _one_hot_rows(out: np.ndarray, index: np.ndarray, width: int) -> None:
    """out: (width, N) rows; sets out[index[n], n] = 1 for indices below width."""
    out.fill(0.0)
    shown = index < width
    out[index[shown], np.flatnonzero(shown)] = 1.0


class ObservationBuilder:
    def __init__(self, core: MarketCore, tracker: EpisodeTracker) -> None:
        self.core = core
        self.tracker = tracker
        self.rows = np.zeros((OBSERVATION_SIZE, core.num_campaigns), dtype=np.float32)
        world = core.world
        p_shown = min(world.num_personas, MAX_PERSONAS_SHOWN)
        self._p_shown = p_shown
        self._a_shown = min(world.num_audiences, MAX_AUDIENCES_SHOWN)
        self._incomes = np.array([p.income for p in core.config.personas])
        self._persona_ones = np.ones(world.num_personas)
        cfg = core.config
        constants = {
            1: cfg.competitor_spread,
            2: cfg.reserve_cpm / 10.0,
            3: float(cfg.competition),
            4: float(cfg.auction == "first_price"),
            5: cfg.competitor_adaptation,
            6: cfg.traffic_volatility,
            7: cfg.drift,
            14: cfg.observation_noise,
            15: world.num_personas / 10.0,
            85: cfg.max_daily_budget / 200.0,
            91: cfg.target_roas / 2.0,
            92: cfg.bid_cap / 20.0,
        }
        for row, value in constants.items():
            self.rows[row] = min(max(value, -OBSERVATION_BOUND), OBSERVATION_BOUND)

    def build(self) -> np.ndarray:
        core, tracker, cfg, world = self.core, self.tracker, self.core.config, self.core.world
        rows = self.rows
        n = core.num_campaigns
        hour = core.hour_index % 24
        last = tracker.last_outcome
        acts = tracker.last_actions
        zeros = np.zeros(n)
        budget = last.budget if last is not None else np.full(n, cfg.max_daily_budget)
        # Market context
        traffic_now = core.traffic[hour]
        traffic_total = traffic_now @ self._persona_ones
        rows[0] = core.log_competitor_median - np.log(cfg.competitor_median_cpm) if cfg.competition else 0.0
        # rows 1-7, 14, 15, 85, 91, 92: constants of the level, written once in __init__
        rows[8] = traffic_total / cfg.opportunities_per_hour
        rows[9] = core.traffic[(hour + 1) % 24] @ self._persona_ones / cfg.opportunities_per_hour
        rows[10] = core.season - 1.0
        rows[11] = last.win_rate if last is not None else zeros
        rows[12] = last.price_cpm / 10.0 if last is not None else zeros
        rows[13] = np.log(core.ctr_drift)
        # Performance history: last hour, cumulative, smoothed
        totals = core.totals
        if last is not None:
            lh = (last.impressions, last.clicks, last.conversions, last.spend, last.revenue)
            if cfg.observation_noise > 0:
                # The platform's hourly report is noisy; the day's cumulative totals are exact.
                noise = 1.0 + cfg.observation_noise * core.rng.standard_normal((5, n))
                lh = tuple(np.maximum(kpi * factor, 0.0) for kpi, factor in zip(lh, noise, strict=True))
        else:
            lh = (zeros, zeros, zeros, zeros, zeros)
        self._kpis(16, lh, budget, scale=1.0)
        self._kpis(
            26,
            tuple(totals[k] for k in ("impressions", "clicks", "conversions", "spend", "revenue")),
            budget,
            scale=10.0,
        )
        ema = tracker.ema
        rows[36] = ema[0] / 1000.0
        rows[37] = ema[1] / 20.0
        rows[38] = ema[2] / 5.0
        rows[39] = ema[3] / 10.0
        rows[40] = ema[4] / 50.0
        rows[41] = _ratio(ema[1], ema[0]) / world.reference_ctr
        rows[42] = np.minimum(_ratio(ema[4], ema[3]), 50.0) / 5.0
        rows[43] = (totals["revenue"] - totals["spend"]) / budget
        rows[44] = (lh[4] - lh[3]) / 10.0
        rows[45] = _ratio(totals["spend"] * 1000.0, totals["impressions"]) / 10.0
        rows[46] = _ratio(lh[0], traffic_total)
        rows[47] = (
            core.pending_conversions[:, hour:] @ np.ones(24 - hour) / 5.0 if core.hour_index < 24 else 0.0
        )
        # Demographics: traffic mix now, composition of the chosen audience, its income profile
        p = self._p_shown
        rows[48:72] = 0.0
        mix = traffic_now / np.maximum(traffic_total, 1e-9)[:, None]
        rows[48 : 48 + p] = mix[:, :p].T
        audience = acts.audience if acts is not None else np.full(n, world.num_audiences - 1)
        composition = mix * world.audience_reach[audience]
        composition /= np.maximum(composition @ self._persona_ones, 1e-9)[:, None]
        rows[56 : 56 + p] = composition[:, :p].T
        rows[64 : 64 + p] = (composition * self._incomes[None, :])[:, :p].T
        # Temporal (cyclical)
        angle_hour = 2 * np.pi * hour / 24.0
        angle_next = 2 * np.pi * ((hour + 1) % 24) / 24.0
        angle_week = 2 * np.pi * core.weekday / 7.0
        angle_year = 2 * np.pi * core.day_of_year / 365.0
        rows[72] = np.sin(angle_hour)
        rows[73] = np.cos(angle_hour)
        rows[74] = np.sin(angle_next)
        rows[75] = np.cos(angle_next)
        rows[76] = np.sin(angle_week)
        rows[77] = np.cos(angle_week)
        rows[78] = np.sin(angle_year)
        rows[79] = np.cos(angle_year)
        rows[80] = core.hour_index / cfg.episode_length
        rows[81] = (cfg.episode_length - core.hour_index) / cfg.episode_length
        rows[82] = core.weekday >= 5
        rows[83] = float(hour < 6)
        # Budget state
        spent = core.spent_today
        remaining = np.maximum(budget - spent, 0.0)
        hours_left = max(cfg.episode_length - core.hour_index, 1)
        planned = budget * core.hour_index / cfg.episode_length
        rows[84] = budget / 200.0
        rows[86] = spent / budget
        rows[87] = remaining / budget
        rows[88] = np.minimum(_ratio(spent, planned), 5.0) if core.hour_index > 0 else 1.0
        rows[89] = core.hour_index / cfg.episode_length
        rows[90] = core.product_value / 100.0
        rows[93] = acts.bid / 20.0 if acts is not None else zeros
        rows[94] = acts.audience_size if acts is not None else zeros
        rows[95] = last.requested_budget / 200.0 if last is not None else zeros
        rows[96] = remaining <= 1e-9
        rows[97] = remaining / hours_left / 10.0
        rows[98] = totals["revenue"] / budget
        rows[99] = _ratio(totals["revenue"], totals["spend"]) / 5.0
        # Interactions: last discrete choices, what each creative/audience has yielded, fit hints
        a_shown = self._a_shown
        if acts is not None:
            _one_hot_rows(rows[100:103], acts.creative, len(CREATIVE_TYPES))
            _one_hot_rows(rows[103:109], acts.audience, a_shown)
            _one_hot_rows(rows[109:112], acts.bid_strategy, len(BID_STRATEGIES))
        else:
            rows[100:112] = 0.0
        rows[112:115] = (
            _ratio(tracker.clicks_by_creative, tracker.impressions_by_creative) / world.reference_ctr
        ).T
        rows[115:121] = 0.0
        rows[115 : 115 + a_shown] = (
            _ratio(tracker.clicks_by_audience, tracker.impressions_by_audience) / world.reference_ctr
        )[:, :a_shown].T
        rows[121:127] = 0.0
        rows[121 : 121 + a_shown] = world.audience_product_match[:a_shown, core.product]
        rows[127] = tracker.pair_count(acts) / cfg.episode_length if acts is not None else zeros
        np.clip(rows, -OBSERVATION_BOUND, OBSERVATION_BOUND, out=rows)
        return rows.T.copy(order="C")

    def _kpis(self, start: int, kpis: tuple[np.ndarray, ...], budget: np.ndarray, scale: float) -> None:
        """Five counts and five ratios: impressions, clicks, conversions, spend, revenue; CTR, CVR,
        ROAS, CPC, CPA."""
        impressions, clicks, conversions, spend, revenue = kpis
        rows = self.rows
        rows[start] = impressions / (1000.0 * scale)
        rows[start + 1] = clicks / (20.0 * scale)
        rows[start + 2] = conversions / (5.0 * scale)
        rows[start + 3] = spend / budget * (24.0 / scale)
        rows[start + 4] = revenue / budget * (24.0 / scale) / 5.0
        rows[start + 5] = _ratio(clicks, impressions) / self.core.world.reference_ctr
        rows[start + 6] = _ratio(conversions, clicks) * 10.0
        rows[start + 7] = np.minimum(_ratio(revenue, spend), 50.0) / 5.0
        rows[start + 8] = _ratio(spend, clicks) / 5.0
        rows[start + 9] = _ratio(spend, conversions) / 50.0
