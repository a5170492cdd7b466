"""Scoring policies on a task, with the same seeds for every policy scored.

Two kinds of task, one yardstick: the deterministic policy's mean episode return (the reward the
agent is trained on) as a fraction of the way from random play to an upper reference. On the ad
market the upper reference is the planner with the true simulator parameters (gaelp.sim.market
.policies.upper_bound_policy); on reference tasks (environments whose metadata carries a
`reference_return`, e.g. gymnasium CartPole) it is that return. Which one a run uses follows from
the environment, not from its name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from gymnasium.vector import VectorEnv

from gaelp.rl.algorithms.base import Agent
from gaelp.sim.market.policies import PolicyFactory, evaluate_policy, normalized_reward

EVALUATION_SEED = 10_007  # fixed, and apart from training seeds, so every evaluation sees the same days


@dataclass(frozen=True)
class AgentScore:
    fraction: float    # normalized reward: (return - random's) / (upper reference's - random's)
    reward: float      # mean episode return: the reward the agent is trained on


class Evaluation(Protocol):
    def reference_scores(self, level: int, envs: int) -> dict[str, float]:
        """The references a level is scored against (the keys of LevelReportDocument)."""
        ...

    def evaluate(self, agent: Agent, level: int, envs: int, oracle_roas: float) -> AgentScore: ...


class MarketEvaluation:
    """Keeps each level's references, so that an evaluation is normalized on them."""

    def __init__(self) -> None:
        self._references: dict[int, dict[str, float]] = {}

    def reference_scores(self, level: int, envs: int) -> dict[str, float]:
        self._references[level] = reference_scores(level, envs)
        return self._references[level]

    def evaluate(self, agent: Agent, level: int, envs: int, oracle_roas: float) -> AgentScore:
        del oracle_roas  # kept by the interface; the market is scored on the reward yardstick
        if level not in self._references:
            self.reference_scores(level, envs)
        return evaluate_agent(agent, level, envs, self._references[level])


def reference_scores(level: int, envs: int) -> dict[str, float]:
    """Mean episode reward of random play, the heuristic and the upper-bound planner ("oracle_reward"),
    and the random and heuristic policies on the normalized yardstick (random is 0 by definition,
    the planner 1). "oracle_roas" is the planner's ROAS, for the report only."""
    results = {name: evaluate_policy(name, level, num_envs=envs, seed=EVALUATION_SEED)
               for name in ("upper_bound", "random", "heuristic")}
    random_reward, upper_reward = results["random"].mean_reward, results["upper_bound"].mean_reward
    return {
        "oracle_roas": results["upper_bound"].mean_roas,
        "random": 0.0,
        "heuristic": normalized_reward(results["heuristic"].mean_reward, random_reward, upper_reward),
        "random_reward": random_reward,
        "heuristic_reward": results["heuristic"].mean_reward,
        "oracle_reward": upper_reward,
    }


def deterministic_policy(agent: Agent) -> PolicyFactory:
    """The agent's deterministic policy as a simulator policy factory."""

    def factory(env: Any) -> Any:
        def act(obs: np.ndarray, info: dict[str, Any]) -> Any:
            actions, _, _ = agent.act(obs, deterministic=True)
            return agent.env_actions(actions)

        return act

    return factory


def evaluate_agent(agent: Agent, level: int, envs: int, references: dict[str, float]) -> AgentScore:
    """The agent's deterministic policy on the market task, on the references' seeds."""
    result = evaluate_policy(deterministic_policy(agent), level, num_envs=envs, seed=EVALUATION_SEED)
    fraction = normalized_reward(result.mean_reward, references["random_reward"], references["oracle_reward"])
    return AgentScore(fraction, result.mean_reward)


def mean_episode_return(env: VectorEnv, act: Any, env_actions: Any, seed: int) -> float:
    """Mean return of the first episode of every lane, acting with `act(obs) -> actions`."""
    obs, _ = env.reset(seed=seed)
    lanes = env.num_envs
    returns, first = np.zeros(lanes), np.full(lanes, np.nan)
    while np.isnan(first).any():
        obs, rewards, terminated, truncated, _ = env.step(env_actions(act(np.asarray(obs, np.float32))))
        returns += rewards
        for lane in np.flatnonzero((terminated | truncated) & np.isnan(first)):
            first[lane] = returns[lane]
        returns[terminated | truncated] = 0.0
    return float(first.mean())


class ReturnEvaluation:
    """Reference tasks: fraction = (agent - random) / (reference - random) of mean episode returns."""

    def __init__(self, factory: Any, reference_return: float) -> None:
        self.factory = factory
        self.reference_return = reference_return
        self._random: dict[int, float] = {}

    def _random_return(self, level: int, envs: int) -> float:
        if level not in self._random:
            env = self.factory(envs, level, EVALUATION_SEED)
            env.action_space.seed(EVALUATION_SEED)
            self._random[level] = mean_episode_return(
                env, lambda obs: env.action_space.sample(), lambda actions: actions, EVALUATION_SEED
            )
            env.close()
        return self._random[level]

    def reference_scores(self, level: int, envs: int) -> dict[str, float]:
        random_return = self._random_return(level, envs)
        return {"oracle_roas": 0.0, "random": 0.0, "heuristic": 0.0, "random_reward": random_return,
                "heuristic_reward": random_return, "oracle_reward": self.reference_return}

    def evaluate(self, agent: Agent, level: int, envs: int, oracle_roas: float) -> AgentScore:
        del oracle_roas  # a reference task is scored against its reference return
        env = self.factory(envs, level, EVALUATION_SEED)
        mean = mean_episode_return(env, lambda obs: agent.act(obs, deterministic=True)[0],
                                   agent.env_actions, EVALUATION_SEED)
        env.close()
        span = self.reference_return - self._random_return(level, envs)
        return AgentScore((mean - self._random[level]) / span if span else 0.0, mean)


def evaluation_for(probe: VectorEnv, factory: Any) -> Evaluation:
    """The evaluation an environment calls for, read from a probe env of it."""
    reference = probe.metadata.get("reference_return")
    if reference is None:
        return MarketEvaluation()
    return ReturnEvaluation(factory, float(reference))


class RandomActionAgent:
    """Uniform random actions in an agent's action format: the policy of smoke runs."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent
        self.layout = agent.layout

    def explore(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        batch = len(obs)
        return self._agent.random_actions(batch), np.zeros(batch, np.float32), np.zeros(batch, np.float32)

    def state_values(self, obs: np.ndarray) -> np.ndarray:
        return np.zeros(len(obs), np.float32)

    def env_actions(self, actions: np.ndarray) -> Any:
        return self._agent.env_actions(actions)
