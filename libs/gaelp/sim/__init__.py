"""Environments of the four phases (docs/architecture.md): the ad-market simulator (phase 1), logged data
with off-policy evaluation (phase 2), and the ad-platform connector with its sandbox (phases 3-4).

Entry points for the environment registry ("module:callable"):
- simulator, one campaign:      gaelp.sim:make_ad_env(level, seed) -> gymnasium.Env
- simulator, batched:           gaelp.sim:make_ad_vector_env(num_envs, level, seed) -> VectorEnv
- historical evaluator:         gaelp.sim.historical.evaluator:make_historical_evaluator
- platform connector (sandbox): gaelp.sim.platform.factory:make_platform_connector
Gymnasium id: "gaelp/AdMarket-v0" (registered on import of gaelp.sim).
"""

from gaelp.sim.market.config import CURRICULUM_LEVELS, MarketConfig, curriculum_level
from gaelp.sim.market.env import AdMarketEnv, AdMarketVectorEnv, make_ad_env, make_ad_vector_env
from gaelp.sim.registration import AD_MARKET_ID, register_envs

register_envs()

__all__ = [
    "AD_MARKET_ID",
    "CURRICULUM_LEVELS",
    "AdMarketEnv",
    "AdMarketVectorEnv",
    "MarketConfig",
    "curriculum_level",
    "make_ad_env",
    "make_ad_vector_env",
]
