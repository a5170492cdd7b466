"""`make_agent`: one entry point for the learner and the benchmarks.

    make_agent(algo: str, observation_space, action_space, config=None, device="auto", seed=0) -> Agent

`config` may be the algorithm's typed config, a plain dict (validated into it), or None (defaults).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import torch
from pydantic import BaseModel

from gaelp.rl.algorithms.base import Agent
from gaelp.rl.algorithms.dqn import DQNAgent, DQNConfig
from gaelp.rl.algorithms.ppo import PPOAgent, PPOConfig
from gaelp.rl.algorithms.sac import SACAgent, SACConfig

ALGORITHMS: dict[str, tuple[type[Agent], type[BaseModel]]] = {
    "ppo": (PPOAgent, PPOConfig),
    "sac": (SACAgent, SACConfig),
    "dqn": (DQNAgent, DQNConfig),
}


def make_agent(
    algo: str,
    observation_space: gym.Space[Any],
    action_space: gym.Space[Any],
    config: BaseModel | Mapping[str, Any] | None = None,
    device: str | torch.device = "auto",
    seed: int = 0,
) -> Agent:
    try:
        agent_type, config_type = ALGORITHMS[algo.lower()]
    except KeyError:
        raise ValueError(f"unknown algorithm {algo!r}; choose from {sorted(ALGORITHMS)}") from None
    if config is None:
        typed = config_type()
    elif isinstance(config, config_type):
        typed = config
    elif isinstance(config, Mapping):
        typed = config_type.model_validate(dict(config))
    else:
        raise TypeError(f"{algo} needs a {config_type.__name__} or a dict, got {type(config).__name__}")
    return agent_type(observation_space, action_space, typed, device=device, seed=seed)  # type: ignore[call-arg]
