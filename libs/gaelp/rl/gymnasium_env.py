"""Gymnasium reference tasks as environment-registry entry points.

    make_vector_env(num_envs, level=0, seed=None, env_id=..., reference_return=None) -> VectorEnv

A spec in configs/environments names this entry point with `config: {env_id: CartPole-v1, ...}`;
the orchestrator passes the spec's config as keyword arguments. The env's metadata carries
`reference_return` (the spec's, else gymnasium's registered reward threshold), which is what the
orchestrator scores evaluations against: a reference task has a published answer instead of an
oracle.
"""

from __future__ import annotations

import gymnasium as gym
from gymnasium.vector import VectorEnv

from gaelp.rl.rollout import make_vector_env as make_same_step_vector_env


def make_vector_env(
    num_envs: int,
    level: int = 0,
    seed: int | None = None,
    env_id: str = "CartPole-v1",
    reference_return: float | None = None,
) -> VectorEnv:
    """`seed` is applied by the first reset (the collector's); `level` must be 0 (one task, no curriculum)."""
    del seed
    if level != 0:
        raise ValueError(f"{env_id} is a single task: curriculum level {level} does not exist")
    env = make_same_step_vector_env(env_id, num_envs)
    threshold = reference_return if reference_return is not None else gym.spec(env_id).reward_threshold
    env.metadata = {**env.metadata, "reference_return": threshold}
    return env
