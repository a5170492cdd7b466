"""Driving gymnasium vector environments for the agents' own `learn` loops.

Environments must autoreset in SAME_STEP mode so that the true final observation of an episode is
available (`info["final_obs"]`) for bootstrapping truncations and for off-policy `next_obs`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv


def make_vector_env(env_id: str, num_envs: int, **make_kwargs: Any) -> VectorEnv:
    """Synchronous SAME_STEP-autoreset vector env (cheap envs gain nothing from subprocesses on 2 cores)."""
    return gym.make_vec(
        env_id,
        num_envs=num_envs,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
        **make_kwargs,
    )


@dataclass
class EnvStep:
    obs: np.ndarray
    """observation before the step"""
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    next_obs: np.ndarray
    """true next observation (the final one where an episode ended)"""


class VectorEnvRunner:
    """Keeps the current observation and per-lane episode returns of a SAME_STEP vector env."""

    def __init__(self, env: VectorEnv, seed: int) -> None:
        if env.metadata.get("autoreset_mode") != AutoresetMode.SAME_STEP:
            raise ValueError("vector env must use AutoresetMode.SAME_STEP (see make_vector_env)")
        self.env = env
        obs, _ = env.reset(seed=seed)
        self.obs = np.asarray(obs, dtype=np.float32).reshape(env.num_envs, -1)
        self.episode_returns = np.zeros(env.num_envs)
        self.completed_returns: list[float] = []

    def recent_return_stats(self, window: int = 10) -> dict[str, float]:
        """Mean return of the last `window` finished training episodes (empty before the first)."""
        if not self.completed_returns:
            return {}
        return {
            "recent_return": float(np.mean(self.completed_returns[-window:])),
            "episodes": float(len(self.completed_returns)),
        }

    def step(self, env_actions: Any) -> EnvStep:
        obs, rewards, terminated, truncated, info = self.env.step(env_actions)
        obs = np.asarray(obs, dtype=np.float32).reshape(self.env.num_envs, -1)
        next_obs = obs.copy()
        ended = terminated | truncated
        if ended.any():
            for lane in np.flatnonzero(ended):
                next_obs[lane] = np.asarray(info["final_obs"][lane], dtype=np.float32).reshape(-1)
        rewards = np.asarray(rewards, dtype=np.float32)
        self.episode_returns += rewards
        for lane in np.flatnonzero(ended):
            self.completed_returns.append(float(self.episode_returns[lane]))
            self.episode_returns[lane] = 0.0
        step = EnvStep(self.obs, rewards, terminated, truncated, next_obs)
        self.obs = obs
        return step
