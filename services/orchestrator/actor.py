"""An actor: one vector environment stepped with batched policy inference, cut into chunks.

A chunk is T steps of N campaigns in columns (a TransitionBatch) plus the EpisodeSummary data of
every episode that ended inside it. Chunks are collected in a worker thread; the actor itself holds
no bus or gRPC state, so it can be tested and benchmarked in-process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from gymnasium.vector import VectorEnv

EPISODE_METRICS = ("spend", "revenue", "roas", "ctr", "impressions", "clicks", "conversions", "budget",
                   "success")


@dataclass
class FinishedEpisode:
    lane: int
    steps: int
    total_reward: float
    metrics: dict[str, float]
    reward_components: dict[str, float]


@dataclass
class Chunk:
    obs: np.ndarray            # [T, N, D]
    actions: np.ndarray        # [T, N, A] flat actions as the policy produced them
    rewards: np.ndarray        # [T, N]
    dones: np.ndarray          # [T, N]
    truncations: np.ndarray    # [T, N]
    log_probs: np.ndarray      # [T, N]
    values: np.ndarray         # [T, N]
    next_obs: np.ndarray       # [T, N, D] true next observations
    bootstrap_obs: np.ndarray  # [N, D] observation after the chunk
    bootstrap_values: np.ndarray  # [N]
    episodes: list[FinishedEpisode] = field(default_factory=list)

    @property
    def samples(self) -> int:
        return int(self.rewards.size)


class Actor:
    """Steps a SAME_STEP-autoreset vector env (the true final observation is in info["final_obs"])."""

    def __init__(self, env: VectorEnv, seed: int) -> None:
        self.env = env
        lanes = env.num_envs
        obs, _ = env.reset(seed=seed)
        self.obs = np.asarray(obs, dtype=np.float32).reshape(lanes, -1)
        self._returns = np.zeros(lanes)
        self._steps = np.zeros(lanes, dtype=np.int64)
        self._components: dict[str, np.ndarray] = {}

    def collect(self, agent: Any, steps: int) -> Chunk:
        """Step `steps` times with the agent's current policy (sampling actions)."""
        act: Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]] = agent.policy.act
        obs_rows, action_rows, reward_rows, done_rows, trunc_rows = [], [], [], [], []
        logp_rows, value_rows, next_rows = [], [], []
        episodes: list[FinishedEpisode] = []
        lanes = self.env.num_envs
        for _ in range(steps):
            actions, log_probs, values = act(self.obs, deterministic=False)
            obs, rewards, terminated, truncated, info = self.env.step(agent.env_actions(actions))
            obs = np.asarray(obs, dtype=np.float32).reshape(lanes, -1)
            rewards = np.asarray(rewards, dtype=np.float32)
            ended = np.asarray(terminated) | np.asarray(truncated)
            next_obs = obs.copy()
            for lane in np.flatnonzero(ended):
                next_obs[lane] = np.asarray(info["final_obs"][lane], dtype=np.float32).reshape(-1)
            obs_rows.append(self.obs)
            action_rows.append(np.asarray(actions, dtype=np.float32).reshape(lanes, -1))
            reward_rows.append(rewards)
            done_rows.append(ended.astype(np.float32))
            trunc_rows.append(np.asarray(truncated, dtype=np.float32))
            logp_rows.append(np.asarray(log_probs, dtype=np.float32))
            value_rows.append(np.asarray(values, dtype=np.float32))
            next_rows.append(next_obs)
            self.obs = obs
            self._steps += 1
            self._returns += rewards
            for name, value in info.get("reward_components", {}).items():
                self._components.setdefault(name, np.zeros(lanes))
                self._components[name] += value
            if ended.any():
                episodes += self._finish(np.flatnonzero(ended), info)
        _, _, bootstrap_values = act(self.obs, deterministic=False)
        return Chunk(
            obs=np.stack(obs_rows),
            actions=np.stack(action_rows),
            rewards=np.stack(reward_rows).astype(np.float32),
            dones=np.stack(done_rows),
            truncations=np.stack(trunc_rows),
            log_probs=np.stack(logp_rows),
            values=np.stack(value_rows),
            next_obs=np.stack(next_rows),
            bootstrap_obs=self.obs.copy(),
            bootstrap_values=np.asarray(bootstrap_values, dtype=np.float32),
            episodes=episodes,
        )

    def _finish(self, lanes: np.ndarray, info: dict[str, Any]) -> list[FinishedEpisode]:
        metrics = info.get("episode_metrics", {})
        finished = []
        for lane in lanes:
            finished.append(FinishedEpisode(
                lane=int(lane),
                steps=int(self._steps[lane]),
                total_reward=float(self._returns[lane]),
                metrics={k: float(np.asarray(metrics[k])[lane]) for k in EPISODE_METRICS if k in metrics},
                reward_components={k: float(v[lane]) for k, v in self._components.items()},
            ))
            self._steps[lane] = 0
            self._returns[lane] = 0.0
            for values in self._components.values():
                values[lane] = 0.0
        return finished
