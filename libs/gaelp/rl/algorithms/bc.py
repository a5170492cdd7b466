"""Behaviour cloning pre-training from logged (observation, action) demonstrations.

It maximizes the log-likelihood of the demonstrated flat actions under the agent's own policy network
(`policy.log_prob`: categorical / Gaussian / squashed Gaussian; for DQN a softmax over Q values), with
its own Adam optimizer, so the very same network then continues with RL fine-tuning (`agent.learn` or
`train_on_rollout`). Observation statistics are fitted to the demonstrations first when the policy
normalizes observations. `collect_demonstrations` records a teacher (e.g. the market's heuristic
policy) acting in a vector env, in the agent's flat action format.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from gaelp.rl.algorithms.base import Agent
from gaelp.rl.buffers import ArrayLike, as_tensor


class BehaviourCloningConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(20, ge=1, description="passes over the demonstrations")
    batch_size: int = Field(256, ge=1, description="minibatch size")
    learning_rate: float = Field(1e-3, gt=0, description="Adam step size")


def behaviour_cloning(
    agent: Agent, obs: ArrayLike, actions: ArrayLike, config: BehaviourCloningConfig | None = None
) -> dict[str, float]:
    """Pre-train `agent.policy` on demonstrations `obs [M, obs_dim]`, `actions [M, D]` (or `[M]`)."""
    cfg = config or BehaviourCloningConfig()
    policy = agent.policy
    obs_t = as_tensor(obs, agent.device).reshape(-1, agent.obs_dim)
    actions_t = as_tensor(actions, agent.device).reshape(obs_t.shape[0], -1)
    policy.normalizer.update(obs_t)
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.learning_rate)
    losses: list[torch.Tensor] = []
    for _ in range(cfg.epochs):
        order = torch.randperm(obs_t.shape[0], generator=agent.generator, device=agent.device)
        for start in range(0, obs_t.shape[0], cfg.batch_size):
            index = order[start : start + cfg.batch_size]
            loss = -policy.log_prob(obs_t[index], actions_t[index]).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
    agent.sync_targets()
    history = torch.stack(losses).cpu().numpy()
    tail = max(1, len(history) // cfg.epochs)
    return {"initial_nll": float(np.mean(history[:tail])), "final_nll": float(np.mean(history[-tail:]))}


Teacher = Callable[[np.ndarray, dict[str, Any]], Any]


def collect_demonstrations(
    agent: Agent, env: gym.vector.VectorEnv, teacher: Teacher, steps: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """`steps` vector steps of `teacher(obs, info) -> env actions`: observations `[steps * N, D]` and
    the actions in `agent`'s flat format (what `behaviour_cloning` takes)."""
    obs, info = env.reset(seed=seed)
    observations: list[np.ndarray] = []
    actions: list[np.ndarray] = []
    for _ in range(steps):
        action = teacher(obs, info)
        observations.append(np.asarray(obs, dtype=np.float32).reshape(env.num_envs, -1))
        flat = agent.codec.flatten(action) if agent.codec is not None else np.asarray(action, np.float32)
        actions.append(flat.reshape(env.num_envs, -1))
        obs, _, _, _, info = env.step(action)
    return np.concatenate(observations), np.concatenate(actions)
