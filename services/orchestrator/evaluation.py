"""Scoring policies on a curriculum task as a fraction of the oracle's ROAS (same seeds for all)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gaelp.sim.market.policies import evaluate_policy

EVALUATION_SEED = 10_007  # fixed, and apart from training seeds, so every evaluation sees the same days


@dataclass(frozen=True)
class References:
    oracle_roas: float
    random: float      # fractions of oracle ROAS
    heuristic: float


def reference_scores(level: int, envs: int) -> References:
    oracle = evaluate_policy("oracle", level, num_envs=envs, seed=EVALUATION_SEED).mean_roas
    random = evaluate_policy("random", level, num_envs=envs, seed=EVALUATION_SEED).mean_roas
    heuristic = evaluate_policy("heuristic", level, num_envs=envs, seed=EVALUATION_SEED).mean_roas
    return References(oracle, random / oracle, heuristic / oracle)


def agent_fraction(agent: Any, level: int, envs: int, oracle_roas: float) -> float:
    """The agent's deterministic policy on the task, as a fraction of the oracle's ROAS."""

    def factory(env: Any) -> Any:
        def act(obs: np.ndarray, info: dict[str, Any]) -> Any:
            actions, _, _ = agent.policy.act(obs, deterministic=True)
            return agent.env_actions(actions)

        return act

    return evaluate_policy(factory, level, num_envs=envs, seed=EVALUATION_SEED).mean_roas / oracle_roas


class RandomActionAgent:
    """Uniform random actions in an agent's action format: the policy of smoke runs."""

    def __init__(self, agent: Any) -> None:
        self._agent = agent
        self.policy = self

    def act(self, obs: np.ndarray, deterministic: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        batch = len(obs)
        return self._agent.random_actions(batch), np.zeros(batch, np.float32), np.zeros(batch, np.float32)

    def env_actions(self, actions: np.ndarray) -> Any:
        return self._agent.env_actions(actions)
