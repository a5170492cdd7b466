"""Proximal Policy Optimization (Schulman et al. 2017) for Discrete, Box and hybrid action spaces.

Training: `add_rollout` then `update` (the contract of `Agent`, used by `learn` and the learner); an
update runs once n_steps x lanes transitions wait, truncated steps bootstrapped from the value of
their true final observation. `train_on_rollout(RolloutBatch) -> dict[str, float]` reports policy_loss,
value_loss, entropy, approx_kl, grad_norm, clip_frac (means over the minibatches run), plus
epochs_run, learning_rate, clip_range. The update keeps every tensor on the device; the only host
reads are one per epoch when `target_kl` is set (KL early stop) and one for the returned stats.
Observation statistics are updated after each update, so the data a rollout was collected with and
the policy being updated normalize identically.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from gaelp.config.sections.algorithms import PPOConfig
from gaelp.rl.algorithms.base import Agent, make_adam, scheduled, seeded_init
from gaelp.rl.buffers import RolloutBatch, RolloutBuffer, as_tensor, compute_gae
from gaelp.rl.normalization import ReturnScaler
from gaelp.rl.policies import ActorCriticPolicy
from gaelp.rl.rollout import Rollout


def clipped_surrogate_loss(ratio: torch.Tensor, advantages: torch.Tensor, clip_range: float) -> torch.Tensor:
    """Negated clipped surrogate: mean of max(-A r, -A clip(r, 1 - eps, 1 + eps))."""
    return torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - clip_range, 1 + clip_range)).mean()


def clipped_value_loss(
    value: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, clip_range_vf: float | None
) -> torch.Tensor:
    """0.5 * squared error, optionally the max with the error of the value clipped around old values."""
    error = (value - returns).pow(2)
    if clip_range_vf is not None:
        clipped = old_values + (value - old_values).clamp(-clip_range_vf, clip_range_vf)
        error = torch.max(error, (clipped - returns).pow(2))
    return 0.5 * error.mean()


class PPOAgent(Agent):
    algo = "ppo"
    on_policy = True
    policy: ActorCriticPolicy

    def __init__(
        self,
        observation_space: gym.Space[Any],
        action_space: gym.Space[Any],
        config: PPOConfig | None = None,
        device: str | torch.device = "auto",
        seed: int = 0,
    ) -> None:
        super().__init__(observation_space, action_space, device, seed)
        self.config = config or PPOConfig()
        with seeded_init(seed):
            self.policy = ActorCriticPolicy(
                self.obs_dim,
                self.layout,
                self.config.network,
                self.config.normalization,
                self.config.log_std_init,
            ).to(self.device)
        self.policy.generator = self.generator
        self.parameters = list(self.policy.parameters())
        self.optimizer = make_adam(self.parameters, self.config.learning_rate, self.config.adam_eps)
        norm = self.config.normalization
        self.return_scaler = (
            ReturnScaler(self.config.gamma, norm.reward_clip) if norm.normalize_rewards else None
        )
        self._pending: list[Rollout] = []

    def _schedule(self, initial: float, kind: str) -> float:
        return scheduled(initial, kind, self.env_steps / self.config.schedule_steps)

    def train_on_rollout(self, batch: RolloutBatch) -> dict[str, float]:
        cfg = self.config
        steps, lanes = batch.shape
        obs = as_tensor(batch.obs, self.device).reshape(steps, lanes, -1)
        rewards = _numpy(batch.rewards)
        dones = _numpy(batch.dones)
        if self.return_scaler is not None:
            rewards = self.return_scaler(rewards, dones)
        values = _numpy(batch.values)
        if batch.next_values is None:
            with torch.no_grad():
                next_values = (
                    self.policy.value(as_tensor(batch.next_obs, self.device).reshape(lanes, -1)).cpu().numpy()
                )
        else:
            next_values = _numpy(batch.next_values)
        truncation_values = None if batch.truncation_values is None else _numpy(batch.truncation_values)
        advantages, returns = compute_gae(
            rewards,
            values,
            dones,
            next_values,
            cfg.gamma,
            cfg.gae_lambda,
            _numpy(batch.truncations),
            truncation_values,
        )
        buffer = RolloutBuffer(
            obs,
            as_tensor(batch.actions, self.device),
            as_tensor(batch.log_probs, self.device),
            as_tensor(values, self.device),
            as_tensor(advantages, self.device),
            as_tensor(returns, self.device),
        )
        learning_rate = self._schedule(cfg.learning_rate, cfg.lr_schedule) * self.learning_rate_scale
        clip_range = self._schedule(cfg.clip_range, cfg.clip_schedule)
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate
        stats, epochs_run = self._update(buffer, clip_range)
        self.policy.normalizer.update(obs.reshape(steps * lanes, -1))
        self._count_added(steps * lanes)
        self.updates += 1
        return {
            **stats,
            "epochs_run": float(epochs_run),
            "learning_rate": learning_rate,
            "clip_range": clip_range,
        }

    def _update(self, buffer: RolloutBuffer, clip_range: float) -> tuple[dict[str, float], int]:
        cfg = self.config
        names = ("policy_loss", "value_loss", "entropy", "approx_kl", "grad_norm", "clip_frac")
        history: list[torch.Tensor] = []
        epochs_run = 0
        for _ in range(self.update_epochs or cfg.n_epochs):
            epoch_kl: list[torch.Tensor] = []
            for sample in buffer.minibatches(cfg.batch_size, self.generator):
                log_prob, entropy, value = self.policy.evaluate(sample.obs, sample.actions)
                log_ratio = log_prob - sample.old_log_probs
                ratio = log_ratio.exp()
                advantages = sample.advantages
                if cfg.normalize_advantage and advantages.numel() > 1:
                    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
                policy_loss = clipped_surrogate_loss(ratio, advantages, clip_range)
                value_loss = clipped_value_loss(value, sample.old_values, sample.returns, cfg.clip_range_vf)
                entropy_mean = entropy.mean()
                loss = policy_loss + cfg.vf_coef * value_loss - cfg.ent_coef * entropy_mean
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = nn.utils.clip_grad_norm_(self.parameters, cfg.max_grad_norm, foreach=True)
                self.optimizer.step()
                with torch.no_grad():
                    approx_kl = ((ratio - 1) - log_ratio).mean()
                    clip_frac = ((ratio - 1).abs() > clip_range).float().mean()
                    history.append(
                        torch.stack(
                            [
                                policy_loss.detach(),
                                value_loss.detach(),
                                entropy_mean.detach(),
                                approx_kl,
                                grad_norm,
                                clip_frac,
                            ]
                        )
                    )
                epoch_kl.append(approx_kl)
            epochs_run += 1
            # one host read per epoch, only when early stopping is on
            if cfg.target_kl is not None and torch.stack(epoch_kl).mean().item() > cfg.target_kl:
                break
        means = torch.stack(history).mean(0).cpu().tolist()
        return dict(zip(names, means, strict=True)), epochs_run

    # ---- the training contract ----------------------------------------------------------------
    def rollout_steps(self) -> int:
        return self.config.n_steps

    def add_rollout(self, rollout: Rollout) -> None:
        if self._pending and rollout.steps != self._pending[0].steps:
            raise ValueError(
                "PPO rollouts of one update must share their horizon: "
                f"{rollout.steps} != {self._pending[0].steps}"
            )
        self._pending.append(rollout)

    def update(self) -> dict[str, float]:
        """One PPO update on the pending rollouts, lanes side by side, once they hold n_steps x lanes
        transitions (lanes: those of one rollout); {} before that."""
        if not self._pending:
            return {}
        if sum(r.samples for r in self._pending) < self.config.n_steps * self._pending[0].lanes:
            return {}
        rollouts, self._pending = self._pending, []
        return self.train_on_rollout(self._rollout_batch(rollouts))

    def _rollout_batch(self, rollouts: list[Rollout]) -> RolloutBatch:
        def lanes(name: str) -> np.ndarray:
            return np.concatenate([getattr(r, name) for r in rollouts], axis=1)

        steps = rollouts[0].steps
        truncations = lanes("truncations")
        next_obs = lanes("next_obs")
        truncation_values = np.zeros_like(truncations)
        cut = np.nonzero(truncations)
        if cut[0].size:
            # the value of the true final observation: a time limit is not the end of the task
            with torch.no_grad():
                final_obs = torch.as_tensor(next_obs[cut], device=self.device)
                truncation_values[cut] = self.policy.value(final_obs).cpu().numpy()
        actions = lanes("actions")
        return RolloutBatch(
            lanes("obs"),
            actions.reshape(steps, actions.shape[1], -1),
            lanes("rewards"),
            lanes("dones"),
            truncations,
            lanes("log_probs"),
            lanes("values"),
            next_obs[-1],
            next_values=np.concatenate([r.bootstrap_values for r in rollouts]),
            truncation_values=truncation_values,
        )

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer": self.optimizer}

    def _extra_training_state(self) -> dict[str, Any]:
        return {"return_scaler": self.return_scaler.state_dict() if self.return_scaler else None}

    def _load_extra_training_state(self, state: dict[str, Any]) -> None:
        if self.return_scaler is not None and state["return_scaler"] is not None:
            self.return_scaler.load_state_dict(state["return_scaler"])


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
