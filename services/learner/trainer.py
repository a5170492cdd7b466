"""Training one run's agent from decoded batches: policy-lag bound, redelivery-safe, versioned.

PPO gathers batches until `rollout_samples` transitions, then runs one update on them (lanes of
all batches side by side); batches more than `max_policy_lag` versions behind are dropped and
counted (not importance-corrected: PPO's clipped ratio already corrects the small lag it keeps).
SAC and DQN add the gathered batches to the agent's replay buffer and take gradient steps in
proportion to the transitions received; old data is what off-policy methods are for, so nothing is
dropped.
A batch id seen before is ignored, so redelivery after a crash trains nothing twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from gaelp.config.sections.learner import LearnerSettings
from gaelp.config.sections.training import TrainingSettings
from gaelp.rl.buffers import RolloutBatch
from gaelp.rl.factory import make_agent
from learner.batches import DecodedBatch


@dataclass
class UpdateResult:
    """What one update did, for LearnerStats and the logs."""

    version: int
    losses: dict[str, float]
    samples: int
    seconds: float
    lag_mean: float
    lag_max: int
    weight_change: float


@dataclass
class RunTrainer:
    run_id: str
    agent: Any
    settings: LearnerSettings
    version: int = 0
    pending: list[DecodedBatch] = field(default_factory=list)
    trained_batch_ids: list[str] = field(default_factory=list)
    dropped_batch_ids: list[str] = field(default_factory=list)
    trained_samples: int = 0
    seen: set[str] = field(default_factory=set)
    last_update: UpdateResult | None = None

    @property
    def on_policy(self) -> bool:
        return self.agent.algo == "ppo"

    def accepts(self, batch: DecodedBatch) -> str | None:
        """None when the batch is to be trained on, else the reason it is not."""
        if batch.batch_id in self.seen:
            return "duplicate"
        if batch.policy_version > self.version:
            return "from_the_future"
        if self.on_policy and self.version - batch.policy_version > self.settings.max_policy_lag:
            return "stale"
        return None

    def add(self, batch: DecodedBatch) -> str | None:
        """Queue a batch; returns the reason when it is not used."""
        reason = self.accepts(batch)
        if reason == "stale":
            self.seen.add(batch.batch_id)
            self.dropped_batch_ids.append(batch.batch_id)
        if reason is not None:
            return reason
        self.seen.add(batch.batch_id)
        self.pending.append(batch)
        return None

    def ready(self) -> bool:
        """An update is due once `rollout_samples` transitions wait: PPO's rollout, and for SAC/DQN
        the step between policy versions, which also paces the actors (PolicyUpdate.rollout_samples)."""
        return sum(b.samples for b in self.pending) >= self.settings.rollout_samples

    def update(self) -> UpdateResult:
        """Train on everything pending and bump the version (runs in a worker thread)."""
        batches, self.pending = self.pending, []
        before = _flat_parameters(self.agent.policy)
        started = time.perf_counter()
        if self.on_policy:
            losses = self._ppo_update(batches)
        else:
            losses = self._off_policy_update(batches)
        seconds = time.perf_counter() - started
        samples = sum(b.samples for b in batches)
        lags = [self.version - b.policy_version for b in batches]
        self.version += 1
        self.trained_samples += samples
        self.trained_batch_ids += [b.batch_id for b in batches]
        result = UpdateResult(
            version=self.version,
            losses=losses,
            samples=samples,
            seconds=seconds,
            lag_mean=float(np.mean(lags)),
            lag_max=int(max(lags)),
            weight_change=float(np.linalg.norm(_flat_parameters(self.agent.policy) - before)),
        )
        self.last_update = result
        return result

    def _ppo_update(self, batches: list[DecodedBatch]) -> dict[str, float]:
        # Lanes of batches with the same horizon sit side by side: one [T, sum N] rollout.
        horizon = batches[0].steps
        if any(b.steps != horizon for b in batches):
            raise ValueError("PPO batches of one update must share their horizon T")

        def stack(name: str, axis: int = 1) -> np.ndarray:
            return np.concatenate([getattr(b, name) for b in batches], axis=axis)

        next_values = None
        if all(b.next_values is not None for b in batches):
            next_values = np.concatenate([b.next_values for b in batches])  # type: ignore[misc]
        rollout = RolloutBatch(
            obs=stack("obs"),
            actions=stack("actions"),
            rewards=stack("rewards"),
            dones=stack("dones"),
            truncations=stack("truncations"),
            log_probs=stack("log_probs"),
            values=stack("values"),
            next_obs=stack("next_obs", axis=0),
            next_values=next_values,
        )
        return self.agent.train_on_rollout(rollout)

    def _off_policy_update(self, batches: list[DecodedBatch]) -> dict[str, float]:
        samples = 0
        for batch in batches:
            if batch.next_obs.ndim != 3:
                raise ValueError("off-policy batches need next_observations of shape [T, N, D]")
            self.agent.add_transitions(
                batch.obs, batch.actions, batch.rewards, batch.dones, batch.truncations, batch.next_obs
            )
            samples += batch.samples
        steps = max(1, round(samples * self.settings.offpolicy_updates_per_sample))
        return self.agent.train_steps(steps)


def _flat_parameters(module: Any) -> np.ndarray:
    return np.concatenate([p.detach().cpu().numpy().ravel() for p in module.parameters()])


def build_run_trainer(
    run_id: str,
    training: TrainingSettings,
    settings: LearnerSettings,
    observation_space: gym.Space[Any],
    action_space: gym.Space[Any],
) -> RunTrainer:
    agent = make_agent(
        training.algorithm,
        observation_space,
        action_space,
        training.algorithm_config(),
        device=settings.device,
        seed=training.seed,
    )
    return RunTrainer(run_id, agent, settings)
