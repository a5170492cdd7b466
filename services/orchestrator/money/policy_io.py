"""The run's policy on a live campaign: the platform's reports as the simulator's observation layout,
and the policy's action as campaign settings within the phase's limits.

The platform reports less than the simulator shows (no market context, no per-persona mix, no
hourly delivery breakdown): those features stay 0. What the platform does report (delivery, spend
and revenue so far, spend per hour, the hour, the settings in force) and what the advertiser knows
without any report (AdvertiserView: the product's value, how well each audience's interests match
the product's, the account's budget cap, ROAS target and bid cap) go where the simulator puts them
(gaelp.sim.market.observation's layout), with the day's budget state (spent, remaining, pace)
from the spend reported for the platform day. Measured on one trained policy in the sandbox
market's simulator (docs/money.md): blind to the product and the account, it earned a mean reward
of 35-37 against 52-55 with the full observation; with them it earned 52-60.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

import numpy as np

from gaelp.sim.market.config import BID_STRATEGIES, CREATIVE_TYPES, HOURS_PER_DAY, MarketConfig
from gaelp.sim.market.observation import MAX_AUDIENCES_SHOWN
from gaelp.sim.market.spaces import OBSERVATION_BOUND, OBSERVATION_SIZE
from gaelp.sim.market.world import build_world
from gaelp.sim.platform.connector import BidStrategy, CampaignReport, CreativeType
from orchestrator.evaluation import RandomActionAgent


@dataclass(frozen=True)
class CampaignSettings:
    daily_budget: float
    bid: float
    bid_strategy: BidStrategy
    creative: CreativeType
    audience: str
    audience_size: float
    policy_bid: float  # the bid the policy chose, before the ledger's maximum bid cut it to `bid`

    @property
    def bid_clipped(self) -> bool:
        return self.bid < round(self.policy_bid, 2)


# The observation rows a live campaign's observation fills (every other row stays 0):
# benchmarks.platform_observation scores a policy on the simulator seeing only these.
LIVE_ROWS: tuple[int, ...] = (19, *range(26, 36), 43, 45, *range(72, 78), *range(80, 100), *range(100, 112),
                              *range(121, 127))


@dataclass(frozen=True)
class AdvertiserView:
    """What the advertiser knows of a campaign before any report, as the simulator shows it."""

    product_value: float  # revenue per conversion
    audience_match: tuple[float, ...]  # per catalogue audience: share of the product's interests it targets
    max_daily_budget: float  # the phase's cap on a campaign's daily budget
    target_roas: float
    bid_cap: float  # the ledger's maximum bid


def advertiser_view(catalogue: MarketConfig, product: str, max_daily_budget: float, target_roas: float,
                    bid_cap: float) -> AdvertiserView:
    """The catalogue's product value and audience match, computed as the simulator's world does."""
    names = [p.name for p in catalogue.products]
    if product not in names:
        raise ValueError(f"product {product!r} is not in the catalogue ({', '.join(names)})")
    world = build_world(catalogue)
    index = names.index(product)
    return AdvertiserView(product_value=float(world.product_value[index]),
                          audience_match=tuple(float(m) for m in world.audience_product_match[:, index]),
                          max_daily_budget=max_daily_budget, target_roas=target_roas, bid_cap=bid_cap)


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / max(denominator, 1e-9)


def platform_observation(report: CampaignReport | None, settings: CampaignSettings | None, hour: int,
                         hours_total: int, hours_done: int, audiences: list[str], view: AdvertiserView,
                         spend_today: Sequence[float]) -> np.ndarray:
    """spend_today: the spend reported for each hour of the platform day of `hour` the campaign ran."""
    rows = np.zeros(OBSERVATION_SIZE, dtype=np.float32)
    # The budget in force; before the first decision the cap, as the simulator shows it.
    budget = settings.daily_budget if settings is not None else view.max_daily_budget
    rows[85] = view.max_daily_budget / 200.0
    rows[90] = view.product_value / 100.0
    rows[91] = view.target_roas / 2.0
    rows[92] = view.bid_cap / 20.0
    shown = min(len(view.audience_match), MAX_AUDIENCES_SHOWN)
    rows[121:121 + shown] = view.audience_match[:shown]
    spent = float(sum(spend_today))
    remaining = max(budget - spent, 0.0)
    rows[84] = budget / 200.0
    rows[86] = spent / budget
    rows[87] = remaining / budget
    # Pace: spend over the even plan for the hours reported (the simulator's plan for the hours past).
    rows[88] = min(_ratio(spent, budget * len(spend_today) / HOURS_PER_DAY), 5.0) if spend_today else 1.0
    rows[96] = remaining <= 1e-9
    rows[97] = remaining / max(HOURS_PER_DAY - hour % HOURS_PER_DAY, 1) / 10.0
    if report is not None and settings is not None:
        last = report.hourly_spend[-1] if report.hourly_spend else 0.0
        rows[19] = last / budget * 24.0
        totals = (report.impressions, report.clicks, report.conversions, report.spend, report.revenue)
        rows[26] = totals[0] / 10_000.0
        rows[27] = totals[1] / 200.0
        rows[28] = totals[2] / 50.0
        rows[29] = totals[3] / budget * 2.4
        rows[30] = totals[4] / budget * 2.4 / 5.0
        rows[31] = _ratio(totals[1], totals[0]) / 0.02
        rows[32] = _ratio(totals[2], totals[1]) * 10.0
        rows[33] = min(_ratio(totals[4], totals[3]), 50.0) / 5.0
        rows[34] = _ratio(totals[3], totals[1]) / 5.0
        rows[35] = _ratio(totals[3], totals[2]) / 50.0
        rows[43] = (report.revenue - report.spend) / budget
        rows[45] = _ratio(report.spend * 1000.0, report.impressions) / 10.0
        rows[98] = report.revenue / budget
        rows[99] = _ratio(report.revenue, report.spend) / 5.0
    angle = 2 * np.pi * (hour % HOURS_PER_DAY) / HOURS_PER_DAY
    rows[72], rows[73] = np.sin(angle), np.cos(angle)
    angle_next = 2 * np.pi * ((hour + 1) % HOURS_PER_DAY) / HOURS_PER_DAY
    rows[74], rows[75] = np.sin(angle_next), np.cos(angle_next)
    weekday = (hour // HOURS_PER_DAY) % 7
    rows[76], rows[77] = np.sin(2 * np.pi * weekday / 7), np.cos(2 * np.pi * weekday / 7)
    rows[80] = rows[89] = hours_done / max(hours_total, 1)
    rows[81] = (hours_total - hours_done) / max(hours_total, 1)
    rows[82] = weekday >= 5
    rows[83] = float(hour % HOURS_PER_DAY < 6)
    if settings is not None:
        rows[93] = settings.bid / 20.0
        rows[95] = settings.daily_budget / 200.0
        rows[94] = settings.audience_size
        rows[100 + CREATIVE_TYPES.index(settings.creative)] = 1.0
        audience = audiences.index(settings.audience) if settings.audience in audiences else -1
        if 0 <= audience < 6:
            rows[103 + audience] = 1.0
        rows[109 + BID_STRATEGIES.index(settings.bid_strategy)] = 1.0
    np.clip(rows, -OBSERVATION_BOUND, OBSERVATION_BOUND, out=rows)
    return rows[None, :]


def _scalar(value: Any) -> float:
    return float(np.asarray(value).reshape(-1)[0])


def decide(agent: Any, observation: np.ndarray, audiences: list[str], budget_range: tuple[float, float],
           max_bid: float) -> CampaignSettings:
    """The policy's action as settings: the budget clamped to the phase's range, the bid to the
    ledger's maximum bid (a bid above it would only be refused; with the default limits the cap is
    the top of the policy's bid range, so only a ledger configured tighter cuts a bid)."""
    if isinstance(agent, RandomActionAgent):
        actions, _, _ = agent.explore(observation)
    else:
        actions, _, _ = agent.act(observation, True)
    env_actions = agent.env_actions(actions)
    low, high = budget_range
    policy_bid = max(_scalar(env_actions["bid"]), 0.01)
    return CampaignSettings(
        daily_budget=round(min(max(_scalar(env_actions["daily_budget"]), low), high), 2),
        bid=round(min(policy_bid, max_bid), 2), policy_bid=policy_bid,
        bid_strategy=cast(BidStrategy, BID_STRATEGIES[int(_scalar(env_actions["bid_strategy"]))]),
        creative=cast(CreativeType, CREATIVE_TYPES[int(_scalar(env_actions["creative"]))]),
        audience=audiences[int(_scalar(env_actions["audience"])) % len(audiences)],
        audience_size=round(min(max(_scalar(env_actions["audience_size"]), 0.1), 1.0), 3),
    )


def keep_creative(settings: CampaignSettings, creative: CreativeType) -> CampaignSettings:
    """Creatives change only through validation: the live one stays until another is approved."""
    return replace(settings, creative=creative)
