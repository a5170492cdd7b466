"""Ensemble of trained agents (any mix of PPO/SAC/DQN over the same spaces).

Combination rule: every member proposes its deterministic flat action; member i carries weight
w_i = softmax(score_i / temperature), where score_i is an exponential moving average of the episode
returns credited to it (`record_return`), starting equal. Discrete columns take the weighted
plurality vote (ties go to the lowest index); continuous columns take the weighted mean. The
returned value is the weighted mean of the members' value estimates; the returned log-prob is the
log of the vote share of the chosen discrete choices (0 for purely continuous actions), since the
ensemble acts deterministically.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from gaelp.rl.algorithms.base import Agent
from gaelp.rl.spaces import ActionLayout


class EnsembleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(100.0, gt=0, description="softmax temperature over return scores")
    score_decay: float = Field(0.9, ge=0, lt=1, description="EMA factor for recent returns")


class EnsemblePolicy:
    """Actor-facing view of the ensemble with the same `act` signature as a single policy."""

    def __init__(self, ensemble: EnsembleAgent) -> None:
        self.ensemble = ensemble

    def act(self, obs: np.ndarray, deterministic: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        del deterministic  # the vote is always deterministic
        return self.ensemble.combine(obs)


class EnsembleAgent:
    def __init__(self, members: Sequence[Agent], config: EnsembleConfig | None = None) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one member")
        layouts = {(m.layout.kind, m.layout.discrete_sizes, m.layout.n_continuous) for m in members}
        if len(layouts) != 1:
            raise ValueError("ensemble members must share one action space")
        self.members = list(members)
        self.config = config or EnsembleConfig()
        self.layout: ActionLayout = members[0].layout
        self.scores = np.zeros(len(members))
        self.scored = np.zeros(len(members), dtype=bool)
        self.policy = EnsemblePolicy(self)

    def weights(self) -> np.ndarray:
        logits = self.scores / self.config.temperature
        exp = np.exp(logits - logits.max())
        return exp / exp.sum()

    def record_return(self, member: int, episode_return: float) -> None:
        """Credit an episode return to a member (e.g. from its own evaluation episodes)."""
        if not self.scored[member]:
            self.scores[member], self.scored[member] = episode_return, True
        else:
            decay = self.config.score_decay
            self.scores[member] = decay * self.scores[member] + (1 - decay) * episode_return

    def combine(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        weights = self.weights()
        proposals, values = [], []
        for member in self.members:
            action, _, value = member.policy.act(obs, deterministic=True)
            proposals.append(action.reshape(action.shape[0], -1).astype(np.float64))
            values.append(value)
        stacked = np.stack(proposals)  # [M, B, D]
        batch = stacked.shape[1]
        combined = np.zeros(stacked.shape[1:])
        log_prob = np.zeros(batch)
        for column, size in enumerate(self.layout.discrete_sizes):
            votes = np.zeros((batch, size))
            choices = stacked[:, :, column].astype(np.int64)
            for m in range(len(self.members)):
                votes[np.arange(batch), choices[m]] += weights[m]
            combined[:, column] = votes.argmax(1)
            log_prob += np.log(votes.max(1))
        n_disc = self.layout.n_discrete
        combined[:, n_disc:] = np.tensordot(weights, stacked[:, :, n_disc:], axes=1)
        value = np.tensordot(weights, np.stack(values), axes=1)
        if self.layout.kind == "discrete":
            return combined[:, 0].astype(np.int64), log_prob, value
        return combined.astype(np.float32), log_prob, value
