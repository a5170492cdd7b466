"""Action and observation spaces of the ad-market environments (docs/architecture.md, "The ad action")."""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from gaelp.config.action_bounds import AUDIENCE_SIZE_RANGE, BID_RANGE, DAILY_BUDGET_RANGE
from gaelp.sim.market.config import BID_STRATEGIES, CREATIVE_TYPES

OBSERVATION_SIZE = 128
OBSERVATION_BOUND = 10.0
CONTINUOUS_RANGES: dict[str, tuple[float, float]] = {
    "daily_budget": DAILY_BUDGET_RANGE,
    "bid": BID_RANGE,
    "audience_size": AUDIENCE_SIZE_RANGE,
}


def make_action_space(num_audiences: int) -> spaces.Dict:
    entries: dict[str, spaces.Space] = {
        "creative": spaces.Discrete(len(CREATIVE_TYPES)),
        "audience": spaces.Discrete(num_audiences),
        "bid_strategy": spaces.Discrete(len(BID_STRATEGIES)),
    }
    for name, (low, high) in CONTINUOUS_RANGES.items():
        entries[name] = spaces.Box(low=np.float32(low), high=np.float32(high), shape=(1,), dtype=np.float32)
    return spaces.Dict(entries)


def make_observation_space() -> spaces.Box:
    return spaces.Box(-OBSERVATION_BOUND, OBSERVATION_BOUND, shape=(OBSERVATION_SIZE,), dtype=np.float32)
