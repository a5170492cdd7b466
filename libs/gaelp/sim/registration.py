"""Gymnasium ids of the simulator, so any gymnasium trainer can make it by name."""

from __future__ import annotations

import gymnasium as gym

AD_MARKET_ID = "gaelp/AdMarket-v0"


def register_envs() -> None:
    if AD_MARKET_ID in gym.registry:
        return
    gym.register(
        id=AD_MARKET_ID,
        entry_point="gaelp.sim.market.env:AdMarketEnv",
        vector_entry_point="gaelp.sim.market.env:AdMarketVectorEnv",
        kwargs={"level": 0},
    )
