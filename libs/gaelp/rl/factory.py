"""`make_agent`: one entry point for the learner, the actors and the benchmarks.

    make_agent(algo, observation_space, action_space, config=None, device="auto", seed=0) -> Agent

`algo` is a built-in algorithm ("ppo", "sac", "dqn") or a `module:Class` entry point of a user's own
`Agent` subclass, constructed as `Class(observation_space, action_space, config: dict, device, seed)`.
For built-ins, `config` may be the algorithm's typed config, a plain dict (validated into it), or
None (defaults).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import torch
from pydantic import BaseModel

from gaelp.config.sections.algorithms import ALGORITHM_CONFIGS
from gaelp.entry_points import load_entry_point
from gaelp.rl.algorithms.base import Agent
from gaelp.rl.algorithms.dqn import DQNAgent
from gaelp.rl.algorithms.ppo import PPOAgent
from gaelp.rl.algorithms.sac import SACAgent

BUILT_IN: dict[str, tuple[type[PPOAgent] | type[SACAgent] | type[DQNAgent], type[BaseModel]]] = {
    "ppo": (PPOAgent, ALGORITHM_CONFIGS["ppo"]),
    "sac": (SACAgent, ALGORITHM_CONFIGS["sac"]),
    "dqn": (DQNAgent, ALGORITHM_CONFIGS["dqn"]),
}


def agent_class(entry_point: str) -> type[Agent]:
    """The `Agent` subclass an entry point names; ValueError when it names anything else."""
    try:
        loaded = load_entry_point(entry_point)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"cannot load agent entry point {entry_point!r}: {error}") from error
    if not (isinstance(loaded, type) and issubclass(loaded, Agent)):
        raise ValueError(f"agent entry point {entry_point!r} is not a subclass of gaelp.rl.Agent")
    return loaded


def make_agent(
    algo: str,
    observation_space: gym.Space[Any],
    action_space: gym.Space[Any],
    config: BaseModel | Mapping[str, Any] | None = None,
    device: str | torch.device = "auto",
    seed: int = 0,
) -> Agent:
    if ":" in algo:
        if isinstance(config, BaseModel):
            raise TypeError("a user agent takes its config as a dict")
        user_type: Any = agent_class(algo)  # its constructor signature is the documented one
        agent: Agent = user_type(observation_space, action_space, dict(config or {}), device, seed)
        return agent
    try:
        agent_type, config_type = BUILT_IN[algo.lower()]
    except KeyError:
        raise ValueError(
            f"unknown algorithm {algo!r}; choose from {sorted(BUILT_IN)} or name an Agent as module:Class"
        ) from None
    if config is None:
        typed = config_type()
    elif isinstance(config, config_type):
        typed = config
    elif isinstance(config, Mapping):
        typed = config_type.model_validate(dict(config))
    else:
        raise TypeError(f"{algo} needs a {config_type.__name__} or a dict, got {type(config).__name__}")
    return agent_type(observation_space, action_space, typed, device=device, seed=seed)  # type: ignore[arg-type]
