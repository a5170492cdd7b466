"""The one rollout collector: `Agent.learn` and the orchestrator's actors both step environments here.

A rollout is T steps of N lanes of a SAME_STEP-autoreset vector env, in columns, plus the episodes
that ended inside it. `next_obs` holds the true next observation of every step (the final one where
an episode ended, from `info["final_obs"]`), which is what truncated steps are bootstrapped from and
what off-policy learners store. `truncations` marks steps that were cut by a time limit and did not
terminate; `dones` marks every step that ended an episode either way.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv

from gaelp.rl.spaces import ActionLayout


class Behaviour(Protocol):
    """What the collector needs of whatever acts: an `Agent`, or the random policy of smoke runs."""

    layout: ActionLayout

    def explore(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    def state_values(self, obs: np.ndarray) -> np.ndarray: ...

    def env_actions(self, actions: np.ndarray) -> Any: ...


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
class FinishedEpisode:
    lane: int
    steps: int
    total_reward: float
    metrics: dict[str, float]
    """the env's `info["episode_metrics"]` for the lane (empty for envs that report none)"""
    reward_components: dict[str, float]


@dataclass
class Rollout:
    obs: np.ndarray               # [T, N, D] observation before each step
    actions: np.ndarray           # [T, N] indices (Discrete) or [T, N, A] flat actions (policy output)
    rewards: np.ndarray           # [T, N]
    dones: np.ndarray             # [T, N] the step ended its episode (terminated or truncated)
    truncations: np.ndarray       # [T, N] ended by truncation only (bootstrapped from next_obs)
    log_probs: np.ndarray         # [T, N]
    values: np.ndarray            # [T, N]
    next_obs: np.ndarray          # [T, N, D] true next observations
    bootstrap_values: np.ndarray  # [N] value of next_obs[-1] under the acting policy
    episodes: list[FinishedEpisode] = field(default_factory=list)

    @property
    def steps(self) -> int:
        return int(self.rewards.shape[0])

    @property
    def lanes(self) -> int:
        return int(self.rewards.shape[1])

    @property
    def samples(self) -> int:
        return int(self.rewards.size)


class RolloutCollector:
    """Keeps the current observation and the per-lane episode bookkeeping of one vector env."""

    def __init__(self, env: VectorEnv, seed: int) -> None:
        if env.metadata.get("autoreset_mode") != AutoresetMode.SAME_STEP:
            raise ValueError("vector env must use AutoresetMode.SAME_STEP (see make_vector_env)")
        self.env = env
        lanes = env.num_envs
        obs, _ = env.reset(seed=seed)
        self.obs = np.asarray(obs, dtype=np.float32).reshape(lanes, -1)
        self._returns = np.zeros(lanes)
        self._steps = np.zeros(lanes, dtype=np.int64)
        self._components: dict[str, np.ndarray] = {}
        self.episodes_finished = 0
        self.completed_returns: deque[float] = deque(maxlen=100)  # bounded: actors run for days

    def recent_return_stats(self, window: int = 10) -> dict[str, float]:
        """Mean return of the last `window` finished episodes (empty before the first)."""
        if not self.completed_returns:
            return {}
        return {
            "recent_return": float(np.mean(list(self.completed_returns)[-window:])),
            "episodes": float(self.episodes_finished),
        }

    def collect(self, agent: Behaviour, steps: int) -> Rollout:
        """Step `steps` times with the agent's exploring policy (`Agent.explore`)."""
        lanes = self.env.num_envs
        discrete = agent.layout.kind == "discrete"
        obs_rows, action_rows, reward_rows, done_rows, trunc_rows = [], [], [], [], []
        logp_rows, value_rows, next_rows = [], [], []
        episodes: list[FinishedEpisode] = []
        for _ in range(steps):
            actions, log_probs, values = agent.explore(self.obs)
            obs, rewards, terminated, truncated, info = self.env.step(agent.env_actions(actions))
            obs = np.asarray(obs, dtype=np.float32).reshape(lanes, -1)
            rewards = np.asarray(rewards, dtype=np.float32)
            terminated, truncated = np.asarray(terminated, bool), np.asarray(truncated, bool)
            ended = terminated | truncated
            next_obs = obs.copy()
            for lane in np.flatnonzero(ended):
                next_obs[lane] = np.asarray(info["final_obs"][lane], dtype=np.float32).reshape(-1)
            obs_rows.append(self.obs)
            action_rows.append(
                np.asarray(actions, dtype=np.float32).reshape(lanes) if discrete
                else np.asarray(actions, dtype=np.float32).reshape(lanes, -1)
            )
            reward_rows.append(rewards)
            done_rows.append(ended.astype(np.float32))
            trunc_rows.append((truncated & ~terminated).astype(np.float32))
            logp_rows.append(np.asarray(log_probs, dtype=np.float32).reshape(lanes))
            value_rows.append(np.asarray(values, dtype=np.float32).reshape(lanes))
            next_rows.append(next_obs)
            self.obs = obs
            self._steps += 1
            self._returns += rewards
            for name, component in info.get("reward_components", {}).items():
                self._components.setdefault(name, np.zeros(lanes))
                self._components[name] += component
            if ended.any():
                episodes += self._finish(np.flatnonzero(ended), info)
        next_obs_block = np.stack(next_rows)
        return Rollout(
            obs=np.stack(obs_rows),
            actions=np.stack(action_rows),
            rewards=np.stack(reward_rows),
            dones=np.stack(done_rows),
            truncations=np.stack(trunc_rows),
            log_probs=np.stack(logp_rows),
            values=np.stack(value_rows),
            next_obs=next_obs_block,
            bootstrap_values=np.asarray(agent.state_values(next_obs_block[-1]), dtype=np.float32),
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
                metrics={name: float(np.asarray(column)[lane]) for name, column in metrics.items()},
                reward_components={name: float(v[lane]) for name, v in self._components.items()},
            ))
            self.completed_returns.append(float(self._returns[lane]))
            self.episodes_finished += 1
            self._steps[lane] = 0
            self._returns[lane] = 0.0
            for values in self._components.values():
                values[lane] = 0.0
        return finished
