"""Gymnasium environments over the market core: a batched vector env and a single-campaign env.

One episode is one day of hourly steps. The vector env auto-resets in SAME_STEP mode: the step
that ends a day returns the next day's first observation and puts the last one in
info["final_obs"]. Per-episode metrics appear in info["episode_metrics"] on that step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from gaelp.rl.reward import RewardEngine
from gaelp.sim.market.config import MarketConfig, resolve_market_config
from gaelp.sim.market.core import CampaignActions, HourOutcome, MarketCore
from gaelp.sim.market.observation import ObservationBuilder
from gaelp.sim.market.reward import reward_components
from gaelp.sim.market.spaces import CONTINUOUS_RANGES, make_action_space, make_observation_space
from gaelp.sim.market.tracking import EpisodeTracker

EPISODE_METRICS: tuple[str, ...] = (
    "spend",
    "revenue",
    "roas",
    "ctr",
    "impressions",
    "clicks",
    "conversions",
    "budget",
    "success",
)
LevelSpec = int | str | MarketConfig | None


def parse_actions(actions: Mapping[str, Any], num_campaigns: int, num_audiences: int) -> CampaignActions:
    """Batched dict actions -> validated arrays; continuous entries are clipped to their bounds."""

    def choice(name: str, size: int) -> np.ndarray:
        values = np.asarray(actions[name]).reshape(num_campaigns).astype(np.int64)
        if values.min() < 0 or values.max() >= size:
            raise ValueError(f"action {name!r} must be in [0, {size}), got {values.min()}..{values.max()}")
        return values

    def amount(name: str) -> np.ndarray:
        low, high = CONTINUOUS_RANGES[name]
        return np.clip(np.asarray(actions[name], dtype=np.float64).reshape(num_campaigns), low, high)

    return CampaignActions(
        creative=choice("creative", 3),
        audience=choice("audience", num_audiences),
        bid_strategy=choice("bid_strategy", 3),
        daily_budget=amount("daily_budget"),
        bid=amount("bid"),
        audience_size=amount("audience_size"),
    )


class AdMarketBatch:
    """N campaigns: market core, bookkeeping, observation and reward, without any reset policy."""

    def __init__(self, config: MarketConfig, num_campaigns: int, seed: int | None) -> None:
        self.config = config
        self.num_campaigns = num_campaigns
        self.core = MarketCore(config, num_campaigns, seed)
        self.tracker = EpisodeTracker(num_campaigns, self.core.world.num_audiences)
        self.observations = ObservationBuilder(self.core, self.tracker)
        self.reward_engine = RewardEngine(config.reward_weights)

    def reset(self, seed: int | None = None) -> np.ndarray:
        self.core.reset(seed)
        self.tracker.reset()
        return self.observations.build()

    def step(self, actions: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, bool, dict[str, Any]]:
        parsed = parse_actions(actions, self.num_campaigns, self.core.world.num_audiences)
        outcome = self.core.step(parsed)
        self.tracker.record(parsed, outcome)
        components = reward_components(self.config, self.core, self.tracker, parsed, outcome)
        reward = self.reward_engine.combine(components)
        info: dict[str, Any] = {"reward_components": components, "hour": self.core.hour_index - 1}
        done = self.core.episode_done
        if done:
            info["episode_metrics"] = self.episode_metrics(outcome)
        return self.observations.build(), reward, done, info

    def episode_metrics(self, last: HourOutcome) -> dict[str, np.ndarray]:
        totals = self.core.totals
        spend, revenue = totals["spend"].copy(), totals["revenue"].copy()
        roas = revenue / np.maximum(spend, 1e-9) * (spend > 0)
        return {
            "spend": spend,
            "revenue": revenue,
            "roas": roas,
            "ctr": totals["clicks"] / np.maximum(totals["impressions"], 1.0),
            "impressions": totals["impressions"].copy(),
            "clicks": totals["clicks"].copy(),
            "conversions": totals["conversions"].copy(),
            "budget": last.budget.copy(),
            "success": (roas >= self.config.target_roas) & (spend > 0),
        }


class AdMarketVectorEnv(VectorEnv):
    """`num_envs` campaigns stepped as one batch; actions are a dict of (num_envs,) arrays."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, num_envs: int = 1, level: LevelSpec = None, seed: int | None = None) -> None:
        self.config = resolve_market_config(level)
        self.num_envs = num_envs
        self.batch = AdMarketBatch(self.config, num_envs, seed)
        self._seed = seed
        self.single_observation_space = make_observation_space()
        self.single_action_space = make_action_space(self.batch.core.world.num_audiences)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._needs_reset = True

    @property
    def core(self) -> MarketCore:
        return self.batch.core

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if isinstance(seed, list):
            seed = seed[0]
        if seed is None and self._needs_reset:
            seed = self._seed
        if seed is not None:
            self.single_action_space.seed(seed)
            self.action_space.seed(seed)
        self._needs_reset = False
        return self.batch.reset(seed), {}

    def step(
        self, actions: Mapping[str, Any]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if self._needs_reset:
            raise RuntimeError("call reset() before step()")
        obs, reward, done, info = self.batch.step(actions)
        terminated = np.full(self.num_envs, done)
        truncated = np.zeros(self.num_envs, dtype=bool)
        if done:
            all_envs = np.ones(self.num_envs, dtype=bool)
            info["_episode_metrics"] = all_envs
            info["final_obs"] = obs
            info["_final_obs"] = all_envs
            obs = self.batch.reset()
        return obs, reward.astype(np.float32), terminated, truncated, info


class AdMarketEnv(gym.Env[np.ndarray, dict[str, Any]]):
    """One campaign; the same market as AdMarketVectorEnv with num_envs=1."""

    metadata = {"render_modes": []}

    def __init__(self, level: LevelSpec = None, seed: int | None = None) -> None:
        self.config = resolve_market_config(level)
        self.batch = AdMarketBatch(self.config, 1, seed)
        self._seed = seed
        self.observation_space = make_observation_space()
        self.action_space = make_action_space(self.batch.core.world.num_audiences)
        self._started = False

    @property
    def core(self) -> MarketCore:
        return self.batch.core

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is None and not self._started:
            seed = self._seed
        self._started = True
        return self.batch.reset(seed)[0], {}

    def step(self, action: Mapping[str, Any]) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, done, info = self.batch.step(action)
        single: dict[str, Any] = {
            "reward_components": {k: float(v[0]) for k, v in info["reward_components"].items()},
            "hour": info["hour"],
        }
        if done:
            single["episode_metrics"] = {k: v[0].item() for k, v in info["episode_metrics"].items()}
        return obs[0], float(reward[0]), done, False, single


def make_ad_env(level: LevelSpec = None, seed: int | None = None) -> AdMarketEnv:
    """Entry point of the simulator for one campaign (environment registry: 'gaelp.sim:make_ad_env')."""
    return AdMarketEnv(level=level, seed=seed)


def make_ad_vector_env(num_envs: int, level: LevelSpec = None, seed: int | None = None) -> AdMarketVectorEnv:
    """Entry point of the batched simulator ('gaelp.sim:make_ad_vector_env')."""
    return AdMarketVectorEnv(num_envs=num_envs, level=level, seed=seed)
