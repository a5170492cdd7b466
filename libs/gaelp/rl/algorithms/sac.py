"""Soft Actor-Critic (Haarnoja et al. 2018): twin Q critics with Polyak-averaged targets, a
tanh-squashed Gaussian actor and automatic entropy tuning.

Hybrid (Dict/Tuple) actions: each discrete entry gets a categorical head sampled with straight-through
Gumbel-softmax, so the critic (which sees a one-hot per entry next to the continuous values) passes
gradients to the logits; the entropy of the discrete part enters exactly (sum_a p log p) rather than
as a sampled log-prob. Continuous and discrete parts each have their own temperature, tuned towards
`-n_continuous` and `discrete_entropy_fraction * sum(log n_k)` respectively.

Training: the `ReplayAgent` schedule (uniform random actions until `learning_starts`, then
`gradient_steps` per `train_freq` vector steps); `train_steps(n) -> dict[str, float]` reports
critic_loss, actor_loss, alpha_loss, alpha, q_mean, one host read per call.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from gaelp.config.sections.algorithms import SACConfig
from gaelp.rl.algorithms.base import ReplayAgent, make_adam, seeded_init
from gaelp.rl.buffers import ArrayLike, ReplayBuffer
from gaelp.rl.policies import SACPolicy
from gaelp.rl.spaces import ActionLayout


def soft_q_target(
    rewards: torch.Tensor,
    discounts: torch.Tensor,
    next_q: torch.Tensor,
    next_log_probs: torch.Tensor,
    alpha: torch.Tensor,
) -> torch.Tensor:
    """r + discount * (min over twins of Q_target(s', a') - sum_parts alpha_p log pi_p(a'|s'))."""
    return rewards + discounts * (next_q.min(0).values - (alpha * next_log_probs).sum(1))


def twin_critic_loss(q: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sum over the twins of half the mean squared error; q is `[2, B]`."""
    return 0.5 * (q - target).pow(2).mean(1).sum()


def sac_actor_loss(log_probs: torch.Tensor, q_pi: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """E[sum_parts alpha_p log pi_p - min Q(s, a~pi)]."""
    return ((alpha * log_probs).sum(1) - q_pi).mean()


def temperature_loss(
    log_alpha: torch.Tensor, log_probs: torch.Tensor, target_entropy: torch.Tensor
) -> torch.Tensor:
    """Raises alpha_p when the entropy of part p falls below its target, lowers it otherwise."""
    return -(log_alpha * (log_probs + target_entropy)).mean()


class SACAgent(ReplayAgent):
    algo = "sac"
    policy: SACPolicy

    def __init__(
        self,
        observation_space: gym.Space[Any],
        action_space: gym.Space[Any],
        config: SACConfig | None = None,
        device: str | torch.device = "auto",
        seed: int = 0,
    ) -> None:
        super().__init__(observation_space, action_space, device, seed)
        if self.layout.kind == "discrete":
            raise TypeError("SAC here needs Box or hybrid actions; use DQN or PPO for Discrete")
        self.config = cfg = config or SACConfig()
        self.learning_starts, self.train_freq, self.gradient_steps = (
            cfg.learning_starts, cfg.train_freq, cfg.gradient_steps
        )
        with seeded_init(seed):
            self.policy = SACPolicy(self.obs_dim, self.layout, cfg.network, cfg.normalization).to(self.device)
        self.policy.generator = self.generator
        self.target_extractor = copy.deepcopy(self.policy.critic_extractor).requires_grad_(False)
        self.target_critic = copy.deepcopy(self.policy.critic).requires_grad_(False)
        self.actor_optimizer = make_adam(self.policy.actor_parameters(), cfg.learning_rate)
        self.critic_optimizer = make_adam(self.policy.critic_parameters(), cfg.learning_rate)
        self.target_entropy = torch.tensor(
            _target_entropies(self.layout, cfg.discrete_entropy_fraction), device=self.device
        )
        self.log_alpha = torch.full(
            (self.policy.n_entropy_parts,),
            math.log(cfg.initial_alpha),
            device=self.device,
            requires_grad=True,
        )
        self.alpha_optimizer = make_adam([self.log_alpha], cfg.learning_rate)
        self.buffer: ReplayBuffer | None = None
        self._online: list[torch.Tensor] = [
            *self.policy.critic_extractor.parameters(), *self.policy.critic.parameters()
        ]
        self._target: list[torch.Tensor] = [
            *self.target_extractor.parameters(), *self.target_critic.parameters()
        ]

    def add_transitions(
        self,
        obs: ArrayLike,
        actions: ArrayLike,
        rewards: ArrayLike,
        dones: ArrayLike,
        truncations: ArrayLike,
        next_obs: ArrayLike,
    ) -> None:
        """Store `[T, N, ...]` transitions (flat actions in env units; the lane count N is fixed)."""
        steps, lanes = rewards.shape[0], rewards.shape[1]
        if self.buffer is None:
            self.buffer = ReplayBuffer(
                self.config.buffer_size,
                lanes,
                self.obs_dim,
                self.layout.flat_dim,
                self.device,
                1,
                self.config.gamma,
            )
        self.buffer.add(obs, actions, rewards, dones, truncations, next_obs)
        self._count_added(steps * lanes)

    def _target_q(self, obs: torch.Tensor, critic_action: torch.Tensor) -> torch.Tensor:
        features = self.target_extractor(self.policy.normalizer(obs))
        return self.target_critic(torch.cat([features, critic_action], dim=1))

    def train_steps(self, n: int) -> dict[str, float]:
        if self.buffer is None or len(self.buffer) == 0:
            raise RuntimeError("no transitions yet: call add_transitions first")
        cfg = self.config
        for optimizer in (self.actor_optimizer, self.critic_optimizer, self.alpha_optimizer):
            for group in optimizer.param_groups:
                group["lr"] = cfg.learning_rate * self.learning_rate_scale
        history: list[torch.Tensor] = []
        for _ in range(n):
            sample = self.buffer.sample(cfg.batch_size, self.generator)
            alpha = self.log_alpha.detach().exp()

            with torch.no_grad():
                next_action, _, next_log_probs = self.policy.actor_sample(sample.next_obs)
                next_q = self._target_q(sample.next_obs, next_action)
                target = soft_q_target(sample.rewards, sample.discounts, next_q, next_log_probs, alpha)
            q = self.policy.q_values(sample.obs, self.policy.critic_action(sample.actions))
            critic_loss = twin_critic_loss(q, target)
            self.critic_optimizer.zero_grad(set_to_none=True)
            critic_loss.backward()
            self.critic_optimizer.step()

            action, _, log_probs = self.policy.actor_sample(sample.obs)
            for parameter in self._online:  # actor loss must not write critic gradients
                parameter.requires_grad_(False)
            q_pi = self.policy.q_values(sample.obs, action).min(0).values
            for parameter in self._online:
                parameter.requires_grad_(True)
            actor_loss = sac_actor_loss(log_probs, q_pi, alpha)
            self.actor_optimizer.zero_grad(set_to_none=True)
            actor_loss.backward()
            self.actor_optimizer.step()

            alpha_loss = temperature_loss(self.log_alpha, log_probs.detach(), self.target_entropy)
            if cfg.auto_alpha:
                self.alpha_optimizer.zero_grad(set_to_none=True)
                alpha_loss.backward()
                self.alpha_optimizer.step()

            with torch.no_grad():
                torch._foreach_lerp_(self._target, self._online, cfg.tau)
                history.append(
                    torch.stack(
                        [
                            critic_loss.detach(),
                            actor_loss.detach(),
                            alpha_loss.detach(),
                            alpha.mean(),
                            q.detach().mean(),
                        ]
                    )
                )
            self.updates += 1
        means = torch.stack(history).mean(0).cpu().tolist()
        return dict(zip(("critic_loss", "actor_loss", "alpha_loss", "alpha", "q_mean"), means, strict=True))

    def explore(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Uniform random actions for the first `learning_starts` env steps, then the policy's samples."""
        if self.schedule_steps_seen >= self.config.learning_starts:
            return super().explore(obs)
        self.acted_steps += len(obs)
        batch = len(obs)
        return self.random_actions(batch), np.zeros(batch, np.float32), np.zeros(batch, np.float32)

    def _modules(self) -> dict[str, torch.nn.Module]:
        return {
            "policy": self.policy,
            "target_extractor": self.target_extractor,
            "target_critic": self.target_critic,
        }

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor": self.actor_optimizer, "critic": self.critic_optimizer, "alpha": self.alpha_optimizer}

    def _extra_training_state(self) -> dict[str, Any]:
        return {
            "log_alpha": self.log_alpha.detach().clone(),
            "buffer": None if self.buffer is None else self.buffer.state_dict(),
            "lanes": None if self.buffer is None else self.buffer.lanes,
            "owed_vector_steps": self.owed_vector_steps,
        }

    def _load_extra_training_state(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.owed_vector_steps = int(state["owed_vector_steps"])
        if state["buffer"] is not None:
            self.buffer = ReplayBuffer(
                self.config.buffer_size,
                state["lanes"],
                self.obs_dim,
                self.layout.flat_dim,
                self.device,
                1,
                self.config.gamma,
            )
            self.buffer.load_state_dict(state["buffer"])


def _target_entropies(layout: ActionLayout, discrete_fraction: float) -> list[float]:
    targets: list[float] = []
    if layout.n_continuous:
        targets.append(-float(layout.n_continuous))
    if layout.n_discrete:
        targets.append(discrete_fraction * sum(math.log(n) for n in layout.discrete_sizes))
    return targets
