"""Logged campaign data from a market that is not the training simulator (by default the platform
sandbox's market), in logged-bandit form: the observation a policy saw, the arm the logging policy
chose with its propensity, and the outcome.

Arms are the discrete part of the ad action (creative x audience); the logging policy picks them
uniformly at random while bid, budget and audience size stay at the fixed LoggingSetup, because
importance weighting needs a known propensity for each logged choice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from gaelp.sim.market.config import CREATIVE_TYPES, MarketConfig
from gaelp.sim.market.env import AdMarketBatch


class LoggingSetup(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bid_strategy: int = Field(1, ge=0, le=2, description="0 CPC, 1 CPM, 2 CPA")
    bid: float = Field(12.0, gt=0)
    daily_budget: float = Field(200.0, gt=0)
    audience_size: float = Field(0.5, gt=0, le=1)


@dataclass(frozen=True)
class LoggedAdData:
    obs: np.ndarray  # (n, 128) what a policy would have seen
    arm: np.ndarray  # (n,) creative * num_audiences + audience
    pscore: np.ndarray  # (n,)
    reward: np.ndarray  # (n,) clicks in the hour
    num_audiences: int
    setup: LoggingSetup

    @property
    def num_arms(self) -> int:
        return len(CREATIVE_TYPES) * self.num_audiences


def fixed_continuous_actions(n: int, setup: LoggingSetup) -> dict[str, np.ndarray]:
    return {
        "bid_strategy": np.full(n, setup.bid_strategy),
        "bid": np.full(n, setup.bid),
        "daily_budget": np.full(n, setup.daily_budget),
        "audience_size": np.full(n, setup.audience_size),
    }


def generate_ad_logs(
    config: MarketConfig,
    num_campaigns: int = 256,
    days: int = 2,
    seed: int = 0,
    setup: LoggingSetup | None = None,
) -> LoggedAdData:
    setup = setup or LoggingSetup()
    batch = AdMarketBatch(config, num_campaigns, seed)
    rng = np.random.default_rng(seed + 1)
    num_audiences = batch.core.world.num_audiences
    num_arms = len(CREATIVE_TYPES) * num_audiences
    observations, arms, rewards = [], [], []
    for _ in range(days):
        obs = batch.reset()
        for _ in range(config.episode_length):
            arm = rng.integers(0, num_arms, size=num_campaigns)
            actions = fixed_continuous_actions(num_campaigns, setup)
            actions |= {"creative": arm // num_audiences, "audience": arm % num_audiences}
            next_obs, _, _, _ = batch.step(actions)
            observations.append(obs)
            arms.append(arm)
            outcome = batch.tracker.last_outcome
            assert outcome is not None  # set by the step just taken
            rewards.append(outcome.clicks.copy())
            obs = next_obs
    arm_all = np.concatenate(arms)
    return LoggedAdData(
        obs=np.concatenate(observations),
        arm=arm_all,
        pscore=np.full(arm_all.shape[0], 1.0 / num_arms),
        reward=np.concatenate(rewards),
        num_audiences=num_audiences,
        setup=setup,
    )
