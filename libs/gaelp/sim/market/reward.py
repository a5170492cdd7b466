"""The reward components of one hour (docs/architecture.md, "The ad action"), before weighting.

Each is an (N,) array named as in gaelp.rl.reward.REWARD_COMPONENTS; RewardEngine weighs them.
"""

from __future__ import annotations

import numpy as np

from gaelp.sim.market.config import MarketConfig
from gaelp.sim.market.core import CampaignActions, HourOutcome, MarketCore
from gaelp.sim.market.tracking import EpisodeTracker


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return numerator / np.maximum(denominator, 1e-9) * (denominator > 0)


def reward_components(
    config: MarketConfig,
    core: MarketCore,
    tracker: EpisodeTracker,
    actions: CampaignActions,
    outcome: HourOutcome,
) -> dict[str, np.ndarray]:
    """Call after tracker.record for this hour (the counts then include this hour)."""
    totals = core.totals
    hours_done = core.hour_index
    length = config.episode_length
    roas = np.minimum(_ratio(outcome.revenue, outcome.spend), config.reward_roas_clip)
    ctr = np.minimum(_ratio(outcome.clicks, outcome.impressions) / core.world.reference_ctr, 5.0)
    conversions = outcome.conversions / config.reward_conversion_scale
    brand_safety = 1.0 - core.world.brand_risk[actions.audience] * actions.audience_size
    # Budget turned into results: on pace to use the budget, and what was spent paid back.
    paced_share = np.minimum(totals["spend"] / (outcome.budget * hours_done / length), 1.0)
    payback = np.minimum(_ratio(totals["revenue"], totals["spend"]), 1.0)
    budget_efficiency = paced_share * payback
    exploration = 1.0 / np.sqrt(tracker.pair_count(actions))
    spend_share = tracker.spend_by_audience / np.maximum(totals["spend"], 1e-9)[:, None]
    entropy = -(spend_share * np.log(np.maximum(spend_share, 1e-12))) @ np.ones(tracker.num_audiences)
    diversity = entropy / np.log(tracker.num_audiences)
    over_budget = (
        np.maximum(outcome.requested_budget - config.max_daily_budget, 0.0) / config.max_daily_budget
    )
    over_bid = np.maximum(actions.bid - config.bid_cap, 0.0) / config.bid_cap
    return {
        "roas": roas,
        "ctr": ctr,
        "conversions": conversions,
        "brand_safety": brand_safety,
        "budget_efficiency": budget_efficiency,
        "exploration": exploration,
        "diversity": diversity,
        "constraint_penalty": over_budget + over_bid,
    }
