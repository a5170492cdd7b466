"""Training one run's agent from decoded batches: policy-lag bound, redelivery-safe, versioned.

The update path is the agent's own (`Agent.add_rollout` then `Agent.update`, the same calls as
`Agent.learn`): an update is due once the pending batches hold what one update of the agent consumes
(`rollout_steps()` vector steps of the batches' lanes: PPO's n_steps, SAC/DQN's train_freq) and at
least the learner's `rollout_samples`, which sets how often a new policy version is published. So
n_steps, learning_starts, train_freq and gradient_steps mean on the learner what they mean in
`learn`. Agents marked `on_policy` have batches more than `max_policy_lag` versions behind dropped
and counted (not importance-corrected: PPO's clipped ratio already corrects the small lag it keeps);
off-policy agents keep old data, which is what replay is for.
A batch id seen before is ignored, so redelivery after a crash trains nothing twice.
The run's phase (each batch carries it) sets how the updates train (training.phases): an update
also waits for `update_every_episodes` finished episodes, and runs `epochs` passes at
`learning_rate_scale` times the algorithm's learning rate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from gaelp.config.sections.learner import LearnerSettings
from gaelp.config.sections.training import PhaseTrainingSettings, TrainingSettings
from gaelp.rl.algorithms.base import Agent
from gaelp.rl.factory import make_agent
from gaelp.rl.rollout import Rollout
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
    agent: Agent
    settings: LearnerSettings
    version: int = 0
    pending: list[DecodedBatch] = field(default_factory=list)
    trained_batch_ids: list[str] = field(default_factory=list)
    dropped_batch_ids: list[str] = field(default_factory=list)
    trained_samples: int = 0
    seen: set[str] = field(default_factory=set)
    last_update: UpdateResult | None = None
    lanes: int = 0
    """lanes of the batches seen (0 before the first)"""
    phases: dict[int, PhaseTrainingSettings] = field(default_factory=dict)
    """training.phases; a phase not named trains as the algorithm's settings say"""

    def accepts(self, batch: DecodedBatch) -> str | None:
        """None when the batch is to be trained on, else the reason it is not."""
        if batch.batch_id in self.seen:
            return "duplicate"
        if batch.policy_version > self.version:
            return "from_the_future"
        if batch.next_obs.ndim != 3:
            return "no_per_step_next_observations"  # truncations are bootstrapped from them
        if self.agent.on_policy and self.version - batch.policy_version > self.settings.max_policy_lag:
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
        self.lanes = batch.lanes
        return None

    def samples_per_update(self) -> int:
        """Transitions between policy versions (also what paces the actors: PolicyUpdate.rollout_samples)."""
        return max(self.agent.rollout_steps() * self.lanes, self.settings.rollout_samples)

    def phase_training(self) -> PhaseTrainingSettings:
        """The settings of the phase of the newest pending batch."""
        phase = self.pending[-1].phase if self.pending else 1
        return self.phases.get(phase) or self.phases.get(1) or PhaseTrainingSettings()

    def ready(self) -> bool:
        if sum(b.samples for b in self.pending) < self.samples_per_update():
            return False
        episodes = self.phase_training().update_every_episodes
        return episodes is None or sum(b.episodes for b in self.pending) >= episodes

    def update(self) -> UpdateResult:
        """Train on everything pending and bump the version (runs in a worker thread)."""
        phase = self.phase_training()
        self.agent.configure_updates(phase.epochs, phase.learning_rate_scale)
        batches, self.pending = self.pending, []
        before = _flat_parameters(self.agent.policy)
        started = time.perf_counter()
        for batch in batches:
            self.agent.add_rollout(self._rollout(batch))
        losses = self.agent.update()
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

    def _rollout(self, batch: DecodedBatch) -> Rollout:
        next_values = batch.next_values
        if next_values is None:
            next_values = self.agent.state_values(batch.next_obs[-1])
        return Rollout(
            obs=batch.obs,
            actions=batch.actions,
            rewards=batch.rewards,
            dones=batch.dones,
            truncations=batch.truncations,
            log_probs=batch.log_probs,
            values=batch.values,
            next_obs=batch.next_obs,
            bootstrap_values=next_values,
        )


def _flat_parameters(module: torch.nn.Module) -> np.ndarray:
    return np.concatenate([p.detach().cpu().numpy().ravel() for p in module.parameters()])


def build_run_trainer(
    run_id: str,
    training: TrainingSettings,
    settings: LearnerSettings,
    observation_space: gym.Space[Any],
    action_space: gym.Space[Any],
) -> RunTrainer:
    agent = make_agent(
        training.agent_name(),
        observation_space,
        action_space,
        training.algorithm_config(),
        device=settings.device,
        seed=training.seed,
    )
    return RunTrainer(run_id, agent, settings, phases=training.phases)
