"""Buffers: the on-policy rollout (with GAE) and off-policy replay (uniform or prioritized).

Columnar contract (what the learner feeds, numpy or torch):

On-policy `RolloutBatch`: obs `[T, N, obs_dim]` float32, actions `[T, N, D]` float32 (or `[T, N]` for
Discrete), rewards `[T, N]`, dones `[T, N]` (episode ended at this step, terminated OR truncated),
truncations `[T, N]` (the subset that ended by a time limit), log_probs `[T, N]`, values `[T, N]`,
next_obs `[N, obs_dim]` (observation after the last step, for bootstrapping), optional next_values
`[N]` (computed by the agent when absent) and optional truncation_values `[T, N]` (value of the final
observation where truncated; without it a truncation is not bootstrapped).

Off-policy transitions (`ReplayBuffer.add`): obs `[T, N, obs_dim]`, actions, rewards, dones,
truncations as above, next_obs `[T, N, obs_dim]` (the true next observation, also at episode ends).

Storage lives on the training device. The replay keeps the lane structure (`N` fixed per buffer), so
n-step returns are formed at sample time by looking ahead along each lane, stopping at episode ends
and at the newest data; sampling and sum-tree updates never synchronise with the host.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor


def as_tensor(x: ArrayLike, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.as_tensor(
        np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=dtype, device=device
    )


@dataclass
class RolloutBatch:
    obs: ArrayLike
    actions: ArrayLike
    rewards: ArrayLike
    dones: ArrayLike
    truncations: ArrayLike
    log_probs: ArrayLike
    values: ArrayLike
    next_obs: ArrayLike
    next_values: ArrayLike | None = None
    truncation_values: ArrayLike | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.rewards.shape[0]), int(self.rewards.shape[1])


def compute_gae(
    rewards: np.ndarray,
    values: np.ndarray,
    dones: np.ndarray,
    next_values: np.ndarray,
    gamma: float,
    gae_lambda: float,
    truncations: np.ndarray | None = None,
    truncation_values: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Generalized advantage estimation over `[T, N]` arrays -> (advantages, returns).

    Runs on the host in numpy: the recursion is sequential in T and numpy's per-op cost is far below
    torch's for these small arrays. A truncated step is bootstrapped with its truncation value.
    """
    rewards = rewards.astype(np.float64)
    if truncations is not None and truncation_values is not None:
        rewards = rewards + gamma * truncations * truncation_values
    steps = rewards.shape[0]
    advantages = np.zeros_like(rewards)
    last = np.zeros(rewards.shape[1:], dtype=np.float64)
    for t in reversed(range(steps)):
        following = next_values if t == steps - 1 else values[t + 1]
        alive = 1.0 - dones[t]
        delta = rewards[t] + gamma * following * alive - values[t]
        last = delta + gamma * gae_lambda * alive * last
        advantages[t] = last
    return advantages.astype(np.float32), (advantages + values).astype(np.float32)


@dataclass
class RolloutSample:
    obs: torch.Tensor
    actions: torch.Tensor
    old_log_probs: torch.Tensor
    old_values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor


class RolloutBuffer:
    """One rollout flattened to `[T * N]` device tensors, served as shuffled minibatches."""

    def __init__(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        log_probs: torch.Tensor,
        values: torch.Tensor,
        advantages: torch.Tensor,
        returns: torch.Tensor,
    ) -> None:
        size = advantages.numel()
        self.data = RolloutSample(
            obs.reshape(size, -1),
            actions.reshape(size, -1),
            log_probs.reshape(size),
            values.reshape(size),
            advantages.reshape(size),
            returns.reshape(size),
        )
        self.size = size

    def minibatches(self, batch_size: int, generator: torch.Generator) -> Iterator[RolloutSample]:
        order = torch.randperm(self.size, generator=generator, device=generator.device)
        for start in range(0, self.size, batch_size):
            index = order[start : start + batch_size]
            yield RolloutSample(*(getattr(self.data, f.name)[index] for f in fields(RolloutSample)))


@dataclass
class ReplaySample:
    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    """n-step discounted reward sum"""
    discounts: torch.Tensor
    """gamma^m * (1 - terminated): multiplies the bootstrap value at next_obs"""
    next_obs: torch.Tensor
    indices: torch.Tensor
    weights: torch.Tensor
    """importance-sampling weights (ones for uniform replay)"""


class ReplayBuffer:
    """Uniform replay of `[rows, lanes]` transitions on `device`, with optional n-step returns."""

    def __init__(
        self,
        capacity: int,
        lanes: int,
        obs_dim: int,
        action_dim: int,
        device: torch.device,
        n_step: int = 1,
        gamma: float = 0.99,
    ) -> None:
        self.rows = max(1, capacity // lanes)
        self.lanes = lanes
        self.device = device
        self.n_step = n_step
        self.gamma = gamma
        shape = (self.rows, lanes)
        self.obs = torch.zeros((*shape, obs_dim), device=device)
        self.next_obs = torch.zeros((*shape, obs_dim), device=device)
        self.actions = torch.zeros((*shape, action_dim), device=device)
        self.rewards = torch.zeros(shape, device=device)
        self.terminated = torch.zeros(shape, device=device)
        self.ended = torch.zeros(shape, device=device)
        self.position = 0
        self.filled = 0
        self.discount_powers = gamma ** torch.arange(n_step + 1, device=device, dtype=torch.float32)

    def __len__(self) -> int:
        return self.filled * self.lanes

    def add(
        self,
        obs: ArrayLike,
        actions: ArrayLike,
        rewards: ArrayLike,
        dones: ArrayLike,
        truncations: ArrayLike,
        next_obs: ArrayLike,
    ) -> torch.Tensor:
        """Append `[T, N, ...]` transitions; returns the flat indices written."""
        rewards_t = as_tensor(rewards, self.device)
        steps, lanes = rewards_t.shape
        if lanes != self.lanes:
            raise ValueError(f"buffer has {self.lanes} lanes, batch has {lanes}")
        if steps > self.rows:
            raise ValueError(f"batch of {steps} rows exceeds buffer rows {self.rows}")
        rows = (self.position + torch.arange(steps, device=self.device)) % self.rows
        dones_t = as_tensor(dones, self.device)
        self.obs[rows] = as_tensor(obs, self.device).reshape(steps, lanes, -1)
        self.next_obs[rows] = as_tensor(next_obs, self.device).reshape(steps, lanes, -1)
        self.actions[rows] = as_tensor(actions, self.device).reshape(steps, lanes, -1)
        self.rewards[rows] = rewards_t
        self.terminated[rows] = dones_t * (1.0 - as_tensor(truncations, self.device))
        self.ended[rows] = dones_t
        self.position = (self.position + steps) % self.rows
        self.filled = min(self.rows, self.filled + steps)
        return (rows[:, None] * lanes + torch.arange(lanes, device=self.device)).reshape(-1)

    def _gather(self, flat: torch.Tensor, weights: torch.Tensor) -> ReplaySample:
        row, lane = flat // self.lanes, flat % self.lanes
        offsets = torch.arange(self.n_step, device=self.device)
        ahead_rows = (row[:, None] + offsets) % self.rows
        # rows written after `row` (the newest row is position - 1)
        available = (self.position - 1 - row) % self.rows
        valid = offsets[None, :] <= available[:, None]
        ended = self.ended[ahead_rows, lane[:, None]]
        ended_before = torch.cumsum(ended, dim=1) - ended
        alive = valid & (ended_before == 0)
        alive_f = alive.to(torch.float32)
        rewards = (
            self.rewards[ahead_rows, lane[:, None]] * alive_f * self.discount_powers[: self.n_step]
        ).sum(1)
        steps_taken = alive.sum(1)
        last_row = ahead_rows.gather(1, (steps_taken - 1).clamp(min=0)[:, None]).squeeze(1)
        discounts = self.discount_powers[steps_taken] * (1.0 - self.terminated[last_row, lane])
        return ReplaySample(
            self.obs[row, lane],
            self.actions[row, lane],
            rewards,
            discounts,
            self.next_obs[last_row, lane],
            flat,
            weights,
        )

    def sample(self, batch_size: int, generator: torch.Generator, beta: float = 0.4) -> ReplaySample:
        flat = torch.randint(0, len(self), (batch_size,), generator=generator, device=self.device)
        return self._gather(flat, torch.ones(batch_size, device=self.device))

    def state_dict(self) -> dict[str, Any]:
        return {
            "obs": self.obs,
            "next_obs": self.next_obs,
            "actions": self.actions,
            "rewards": self.rewards,
            "terminated": self.terminated,
            "ended": self.ended,
            "position": self.position,
            "filled": self.filled,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in ("obs", "next_obs", "actions", "rewards", "terminated", "ended"):
            getattr(self, name).copy_(state[name])
        self.position = int(state["position"])
        self.filled = int(state["filled"])


class SumTree:
    """Binary sum tree over priorities, as a float64 device tensor; batched set and prefix-sum search."""

    def __init__(self, capacity: int, device: torch.device) -> None:
        self.leaves = 1 << max(0, (capacity - 1).bit_length())
        self.depth = self.leaves.bit_length() - 1
        self.tree = torch.zeros(2 * self.leaves, dtype=torch.float64, device=device)
        self._ancestor_shifts = torch.arange(1, self.depth + 1, device=device)

    @property
    def total(self) -> torch.Tensor:
        return self.tree[1]

    def set(self, indices: torch.Tensor, priorities: torch.Tensor) -> None:
        """Write leaf priorities (a repeated index keeps its last value) and add each leaf's change to
        all its ancestors at once: a fixed handful of tensor ops instead of a few per tree level."""
        leaf = indices + self.leaves
        changed, slot = torch.unique(leaf, return_inverse=True)
        positions = torch.arange(leaf.shape[0], device=leaf.device)
        last = torch.full_like(changed, -1).scatter_reduce_(0, slot, positions, "amax")
        after = priorities.to(torch.float64)[last]
        delta = after - self.tree[changed]
        self.tree[changed] = after
        ancestors = changed[:, None] >> self._ancestor_shifts
        self.tree.index_add_(0, ancestors.reshape(-1), delta.repeat_interleave(self.depth))

    def get(self, indices: torch.Tensor) -> torch.Tensor:
        return self.tree[indices + self.leaves]

    def find(self, mass: torch.Tensor) -> torch.Tensor:
        """Leaf index whose prefix-sum interval contains each mass value."""
        mass = mass.to(torch.float64)
        if self.tree.device.type == "cpu":
            # torch's per-call dispatch (microseconds) dwarfs these tiny per-level gathers on CPU;
            # the same walk through numpy views of the same memory is several times faster.
            start = np.ones(mass.shape, dtype=np.int64)
            return torch.from_numpy(self._descend(self.tree.numpy(), mass.numpy(), start))
        return self._descend(self.tree, mass, torch.ones_like(mass, dtype=torch.long))

    def _descend(self, tree: Any, mass: Any, node: Any) -> Any:
        """Root-to-leaf walk, the same code for torch tensors and numpy arrays."""
        for _ in range(self.depth):
            child = node * 2
            left = tree[child]
            go_right = mass > left
            mass = mass - left * go_right
            node = child + go_right
        return node - self.leaves


class PrioritizedReplayBuffer(ReplayBuffer):
    """Proportional prioritized replay (Schaul et al. 2016): P(i) ~ p_i^alpha, IS weights (N P(i))^-beta
    normalized by their batch max; new transitions enter at the running max priority."""

    def __init__(
        self,
        capacity: int,
        lanes: int,
        obs_dim: int,
        action_dim: int,
        device: torch.device,
        n_step: int = 1,
        gamma: float = 0.99,
        alpha: float = 0.6,
        epsilon: float = 1e-6,
    ) -> None:
        super().__init__(capacity, lanes, obs_dim, action_dim, device, n_step, gamma)
        self.alpha = alpha
        self.epsilon = epsilon
        self.tree = SumTree(self.rows * lanes, device)
        self.max_priority = torch.ones((), dtype=torch.float64, device=device)

    def add(
        self,
        obs: ArrayLike,
        actions: ArrayLike,
        rewards: ArrayLike,
        dones: ArrayLike,
        truncations: ArrayLike,
        next_obs: ArrayLike,
    ) -> torch.Tensor:
        flat = super().add(obs, actions, rewards, dones, truncations, next_obs)
        self.tree.set(flat, self.max_priority.expand(flat.shape[0]))
        return flat

    def sample(self, batch_size: int, generator: torch.Generator, beta: float = 0.4) -> ReplaySample:
        total = self.tree.total
        # stratified: one uniform draw inside each of batch_size equal slices of the total mass
        jitter = torch.rand(batch_size, generator=generator, device=self.device, dtype=torch.float64)
        mass = (
            (torch.arange(batch_size, device=self.device, dtype=torch.float64) + jitter) / batch_size * total
        )
        flat = self.tree.find(mass).clamp_(max=len(self) - 1)
        probabilities = self.tree.get(flat) / total
        weights = (len(self) * probabilities).clamp(min=1e-12).pow(-beta)
        weights = (weights / weights.max()).to(torch.float32)
        return self._gather(flat, weights)

    def update_priorities(self, indices: torch.Tensor, td_errors: torch.Tensor) -> None:
        priorities = (td_errors.detach().abs().to(torch.float64) + self.epsilon).pow(self.alpha)
        self.tree.set(indices, priorities)
        self.max_priority = torch.maximum(self.max_priority, priorities.max())

    def state_dict(self) -> dict[str, object]:
        return {**super().state_dict(), "tree": self.tree.tree, "max_priority": self.max_priority}

    def load_state_dict(self, state: dict[str, object]) -> None:
        super().load_state_dict(state)
        self.tree.tree.copy_(state["tree"])  # type: ignore[arg-type]
        self.max_priority = torch.as_tensor(state["max_priority"], device=self.device).clone()
