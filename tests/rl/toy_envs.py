"""Tiny gymnasium environments for fast learning tests (random play scores far below optimal)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class ReachTargetEnv(gym.Env[np.ndarray, np.ndarray]):
    """Observe a target in [-1, 1]^2, act a point in [-1, 1]^2, reward -||a - target||^2; 10 steps."""

    observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        self.target = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        return self.target.copy(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        reward = -float(np.sum((np.asarray(action) - self.target) ** 2))
        self.t += 1
        self.target = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        return self.target.copy(), reward, False, self.t >= 10, {}


class HybridAdEnv(gym.Env[np.ndarray, dict]):
    """A miniature of the ad action: pick the creative matching a one-hot context (Discrete) and a bid
    close to a target in [0.5, 20] (Box). Reward 1[right creative] - |bid - target| / 10; 10 steps."""

    observation_space = spaces.Box(-1.0, 1.0, (4,), np.float32)
    action_space = spaces.Dict(
        {"creative": spaces.Discrete(3), "bid": spaces.Box(0.5, 20.0, (1,), np.float32)}
    )

    def _observe(self) -> np.ndarray:
        obs = np.zeros(4, dtype=np.float32)
        obs[self.context] = 1.0
        obs[3] = (self.target - 10.25) / 9.75
        return obs

    def _draw(self) -> None:
        self.context = int(self.np_random.integers(3))
        self.target = float(self.np_random.uniform(0.5, 20.0))

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        self._draw()
        return self._observe(), {}

    def step(self, action: dict) -> tuple[np.ndarray, float, bool, bool, dict]:
        reward = (
            float(int(action["creative"]) == self.context) - abs(float(action["bid"][0]) - self.target) / 10
        )
        self.t += 1
        self._draw()
        return self._observe(), reward, False, self.t >= 10, {}

    def expert(self, obs: np.ndarray) -> dict:
        return {"creative": int(np.argmax(obs[:3])), "bid": np.array([obs[3] * 9.75 + 10.25], np.float32)}


def vector_env(env_type: type[gym.Env], num_envs: int) -> gym.vector.VectorEnv:
    return gym.vector.SyncVectorEnv(
        [env_type for _ in range(num_envs)], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
    )


def mean_return(
    agent: Any, env: gym.Env, episodes: int = 10, deterministic: bool = True, seed: int = 123
) -> float:
    totals = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        done, total = False, 0.0
        while not done:
            action, _, _ = agent.policy.act(np.asarray(obs, np.float32)[None], deterministic=deterministic)
            env_action = agent.env_actions(action)
            single = (
                {k: v[0] for k, v in env_action.items()} if isinstance(env_action, dict) else env_action[0]
            )
            obs, reward, terminated, truncated, _ = env.step(single)
            total += float(reward)
            done = terminated or truncated
        totals.append(total)
    return float(np.mean(totals))


class ContextBanditEnv(gym.Env[np.ndarray, int]):
    """Observe a one-hot context among 4 and pick the matching arm for reward 1; 10 steps."""

    observation_space = spaces.Box(0.0, 1.0, (4,), np.float32)
    action_space = spaces.Discrete(4)

    def _observe(self) -> np.ndarray:
        self.context = int(self.np_random.integers(4))
        return np.eye(4, dtype=np.float32)[self.context]

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return self._observe(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        reward = float(int(action) == self.context)
        self.t += 1
        return self._observe(), reward, False, self.t >= 10, {}
