"""A user's own agent: advantage actor-critic in ~50 lines, on gaelp's contract (docs/agents.md)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch

from gaelp.rl import Agent, NetworkConfig, NormalizationConfig, compute_gae
from gaelp.rl.algorithms.base import seeded_init
from gaelp.rl.policies import ActorCriticPolicy
from gaelp.rl.rollout import Rollout


class AdvantageActorCritic(Agent):
    algo = "a2c-example"
    on_policy = True  # the learner drops batches of policies more than max_policy_lag versions old

    def __init__(self, observation_space: gym.Space[Any], action_space: gym.Space[Any],
                 config: dict[str, Any], device: str | torch.device, seed: int) -> None:
        super().__init__(observation_space, action_space, device, seed)
        self.horizon = int(config.get("horizon", 32))
        self.epochs = int(config.get("epochs", 4))
        with seeded_init(seed):
            self.policy = ActorCriticPolicy(self.obs_dim, self.layout, NetworkConfig(), NormalizationConfig())
        self.policy.to(self.device).generator = self.generator
        self.learning_rate = float(config.get("learning_rate", 1e-3))
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=self.learning_rate)
        self.pending: list[Rollout] = []

    def rollout_steps(self) -> int:
        return self.horizon

    def add_rollout(self, rollout: Rollout) -> None:
        self.pending.append(rollout)
        self._count_added(rollout.samples)

    def update(self) -> dict[str, float]:
        rollouts, self.pending = self.pending, []
        for group in self.optimizer.param_groups:  # the run's phase may scale it (training.phases)
            group["lr"] = self.learning_rate * self.learning_rate_scale
        losses = []
        for rollout in rollouts:
            with torch.no_grad():  # a time limit is not the end: bootstrap from the final observation
                final_values = self.policy.value(torch.as_tensor(rollout.next_obs)).numpy()
            advantages, returns = compute_gae(rollout.rewards, rollout.values, rollout.dones,
                                              rollout.bootstrap_values, 0.99, 0.95,
                                              rollout.truncations, final_values)
            obs = torch.as_tensor(rollout.obs).reshape(rollout.samples, -1)
            actions = torch.as_tensor(rollout.actions).reshape(rollout.samples, -1)
            advantage = torch.as_tensor(advantages).reshape(-1)
            advantage = (advantage - advantage.mean()) / (advantage.std() + 1e-8)
            target = torch.as_tensor(returns).reshape(-1)
            for _ in range(self.update_epochs or self.epochs):
                log_prob, _, value = self.policy.evaluate(obs, actions)
                loss = -(log_prob * advantage).mean() + 0.5 * (value - target).pow(2).mean()
                self.optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.policy.parameters(), 0.5)
                self.optimizer.step()
                losses.append(loss.item())
        self.updates += 1
        return {"loss": sum(losses) / max(1, len(losses))}

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer": self.optimizer}
