"""Scoring policies on a curriculum task as a fraction of the oracle's ROAS (same seeds for all)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gaelp.sim.market.policies import evaluate_policy

EVALUATION_SEED = 10_007  # fixed, and apart from training seeds, so every evaluation sees the same days


@dataclass(frozen=True)
class AgentScore:
    fraction: float    # mean ROAS as a fraction of the oracle's
    reward: float      # mean episode return: the weighted reward the agent is trained on


def reference_scores(level: int, envs: int) -> dict[str, float]:
    """The oracle's ROAS, the random and heuristic policies' ROAS as fractions of it, and each
    reference's mean episode reward."""
    results = {name: evaluate_policy(name, level, num_envs=envs, seed=EVALUATION_SEED)
               for name in ("oracle", "random", "heuristic")}
    oracle_roas = results["oracle"].mean_roas
    return {
        "oracle_roas": oracle_roas,
        "random": results["random"].mean_roas / oracle_roas,
        "heuristic": results["heuristic"].mean_roas / oracle_roas,
        **{f"{name}_reward": result.mean_reward for name, result in results.items()},
    }


def evaluate_agent(agent: Any, level: int, envs: int, oracle_roas: float) -> AgentScore:
    """The agent's deterministic policy on the task, on the references' seeds."""

    def factory(env: Any) -> Any:
        def act(obs: np.ndarray, info: dict[str, Any]) -> Any:
            actions, _, _ = agent.policy.act(obs, deterministic=True)
            return agent.env_actions(actions)

        return act

    result = evaluate_policy(factory, level, num_envs=envs, seed=EVALUATION_SEED)
    return AgentScore(result.mean_roas / oracle_roas, result.mean_reward)


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
