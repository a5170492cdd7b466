"""Deep Q-Networks with the Rainbow pieces asked for: double DQN targets, dueling heads, proportional
prioritized replay (device sum tree) and n-step returns; Discrete actions only.

Training: the `ReplayAgent` schedule (`gradient_steps` per `train_freq` vector steps after
`learning_starts`); actions are `[T, N]` indices; `train_steps(n) -> dict[str, float]` reports loss,
q_mean, td_abs, epsilon, one host read per call. Epsilon decays linearly with the env steps seen,
and actors compute it from the env-step count that travels with the policy.
"""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gaelp.config.sections.algorithms import DQNConfig
from gaelp.rl.algorithms.base import ReplayAgent, make_adam, scheduled, seeded_init
from gaelp.rl.buffers import ArrayLike, PrioritizedReplayBuffer, ReplayBuffer
from gaelp.rl.policies import QPolicy


def q_learning_target(
    rewards: torch.Tensor,
    discounts: torch.Tensor,
    next_q_target: torch.Tensor,
    next_q_online: torch.Tensor | None,
) -> torch.Tensor:
    """n-step target; double DQN when the online net's next-state Q values are given (it picks the
    action, the target net scores it), else plain max over the target net."""
    if next_q_online is None:
        next_q = next_q_target.max(1).values
    else:
        next_q = next_q_target.gather(1, next_q_online.argmax(1, keepdim=True)).squeeze(1)
    return rewards + discounts * next_q


def weighted_huber_loss(q: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Huber loss weighted by the prioritized-replay importance weights."""
    return (weights * F.smooth_l1_loss(q, target, reduction="none")).mean()


class DQNAgent(ReplayAgent):
    algo = "dqn"
    policy: QPolicy

    def __init__(
        self,
        observation_space: gym.Space[Any],
        action_space: gym.Space[Any],
        config: DQNConfig | None = None,
        device: str | torch.device = "auto",
        seed: int = 0,
    ) -> None:
        super().__init__(observation_space, action_space, device, seed)
        self.config = cfg = config or DQNConfig()
        self.learning_starts, self.train_freq, self.gradient_steps = (
            cfg.learning_starts, cfg.train_freq, cfg.gradient_steps
        )
        with seeded_init(seed):
            self.policy = QPolicy(self.obs_dim, self.layout, cfg.network, cfg.normalization, cfg.dueling).to(
                self.device
            )
        self.policy.generator = self.generator
        self.policy.epsilon = cfg.exploration_initial_eps
        self.target = copy.deepcopy(self.policy).requires_grad_(False)
        self.parameters = list(self.policy.parameters())
        self.optimizer = make_adam(self.parameters, cfg.learning_rate)
        self.buffer: ReplayBuffer | None = None

    def sync_targets(self) -> None:
        self.target.load_state_dict(self.policy.state_dict())

    def _progress(self, env_steps: int | None = None) -> float:
        seen = self.env_steps if env_steps is None else env_steps
        return min(1.0, seen / self.config.schedule_steps)

    def epsilon_at(self, env_steps: int) -> float:
        """The exploration schedule: linear from the initial to the final epsilon over
        `exploration_fraction` of `schedule_steps`, then constant."""
        cfg = self.config
        decay = min(1.0, self._progress(env_steps) / cfg.exploration_fraction)
        return cfg.exploration_initial_eps + decay * (cfg.exploration_final_eps - cfg.exploration_initial_eps)

    def explore(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Epsilon-greedy with epsilon at the env steps seen, including those acted since the last
        policy load (so actors follow the schedule between versions)."""
        self.policy.epsilon = self.epsilon_at(self.schedule_steps_seen)
        return super().explore(obs)

    def _make_buffer(self, lanes: int) -> ReplayBuffer:
        cfg = self.config
        if cfg.prioritized:
            return PrioritizedReplayBuffer(
                cfg.buffer_size,
                lanes,
                self.obs_dim,
                1,
                self.device,
                cfg.n_step,
                cfg.gamma,
                cfg.priority_alpha,
            )
        return ReplayBuffer(cfg.buffer_size, lanes, self.obs_dim, 1, self.device, cfg.n_step, cfg.gamma)

    def add_transitions(
        self,
        obs: ArrayLike,
        actions: ArrayLike,
        rewards: ArrayLike,
        dones: ArrayLike,
        truncations: ArrayLike,
        next_obs: ArrayLike,
    ) -> None:
        """Store `[T, N, ...]` transitions; actions are `[T, N]` indices (0-based)."""
        steps, lanes = rewards.shape[0], rewards.shape[1]
        if self.buffer is None:
            self.buffer = self._make_buffer(lanes)
        self.buffer.add(obs, actions, rewards, dones, truncations, next_obs)
        self._count_added(steps * lanes)
        self.policy.epsilon = self.epsilon_at(self.schedule_steps_seen)

    def train_steps(self, n: int) -> dict[str, float]:
        if self.buffer is None or len(self.buffer) == 0:
            raise RuntimeError("no transitions yet: call add_transitions first")
        cfg = self.config
        beta = cfg.priority_beta_start + self._progress() * (1.0 - cfg.priority_beta_start)
        learning_rate = self.learning_rate_scale * scheduled(cfg.learning_rate, cfg.lr_schedule,
                                                             self._progress())
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate
        history: list[torch.Tensor] = []
        for _ in range(n):
            sample = self.buffer.sample(cfg.batch_size, self.generator, beta)
            with torch.no_grad():
                next_q_online = self.policy.q_values(sample.next_obs) if cfg.double_q else None
                next_q_target = self.target.q_values(sample.next_obs)
                target = q_learning_target(sample.rewards, sample.discounts, next_q_target, next_q_online)
            q = self.policy.q_values(sample.obs).gather(1, sample.actions.long()).squeeze(1)
            loss = weighted_huber_loss(q, target, sample.weights)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.parameters, cfg.max_grad_norm, foreach=True)
            self.optimizer.step()
            td_error = (q - target).detach()
            if isinstance(self.buffer, PrioritizedReplayBuffer):
                self.buffer.update_priorities(sample.indices, td_error)
            self.updates += 1
            if self.updates % cfg.target_update_interval == 0:
                with torch.no_grad():
                    torch._foreach_lerp_(
                        list(self.target.parameters()), list(self.policy.parameters()), cfg.tau
                    )
            history.append(torch.stack([loss.detach(), q.detach().mean(), td_error.abs().mean()]))
        means = torch.stack(history).mean(0).cpu().tolist()
        return {
            **dict(zip(("loss", "q_mean", "td_abs"), means, strict=True)),
            "epsilon": self.policy.epsilon,
            "learning_rate": learning_rate,
        }

    def _modules(self) -> dict[str, nn.Module]:
        return {"policy": self.policy, "target": self.target}

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer": self.optimizer}

    def _extra_training_state(self) -> dict[str, Any]:
        return {
            "epsilon": self.policy.epsilon,
            "buffer": None if self.buffer is None else self.buffer.state_dict(),
            "lanes": None if self.buffer is None else self.buffer.lanes,
            "owed_vector_steps": self.owed_vector_steps,
        }

    def _load_extra_training_state(self, state: dict[str, Any]) -> None:
        self.policy.epsilon = float(state["epsilon"])
        self.owed_vector_steps = int(state["owed_vector_steps"])
        if state["buffer"] is not None:
            self.buffer = self._make_buffer(state["lanes"])
            self.buffer.load_state_dict(state["buffer"])
