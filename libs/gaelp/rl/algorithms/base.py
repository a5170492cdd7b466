"""What every agent shares: spaces, device, seeded generator, action conversion, checkpoints.

Checkpoint API (the learner relies on it):
    agent.save_checkpoint(path, extra: dict | None = None) -> None   # atomic: tmp file + rename
    agent.load_checkpoint(path) -> dict                               # returns `extra`
Policy weights for actors: `agent.policy_state() -> bytes`, `agent.load_policy_state(bytes)`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from gaelp.rl.checkpoint import atomic_save, capture_global_rng, load_payload, restore_global_rng
from gaelp.rl.device import resolve_device
from gaelp.rl.policies import Policy
from gaelp.rl.spaces import ActionLayout, HybridActionCodec, flat_observation_dim


@contextlib.contextmanager
def seeded_init(seed: int) -> Iterator[None]:
    """Deterministic network initialisation without disturbing the caller's global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def scheduled(initial: float, kind: str, progress: float) -> float:
    """A hyperparameter under a schedule: "constant", or "linear" decay to 0 as progress goes 0 -> 1."""
    if kind == "constant":
        return initial
    return initial * max(0.0, 1.0 - progress)


def make_adam(parameters: list[torch.nn.Parameter], lr: float, eps: float = 1e-8) -> torch.optim.Adam:
    """Adam with the fused kernel (one call per step instead of a Python loop over tensors)."""
    return torch.optim.Adam(parameters, lr=lr, eps=eps, fused=True)


class Agent:
    algo: str = ""
    policy: Policy

    def __init__(
        self,
        observation_space: gym.Space[Any],
        action_space: gym.Space[Any],
        device: str | torch.device,
        seed: int,
    ) -> None:
        self.observation_space = observation_space
        self.action_space = action_space
        self.device = resolve_device(device)
        self.seed = seed
        self.obs_dim = flat_observation_dim(observation_space)
        self.layout = ActionLayout.from_space(action_space)
        self.codec = HybridActionCodec(action_space) if self.layout.kind == "hybrid" else None
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        self.np_random = np.random.default_rng(seed)
        self.env_steps = 0
        self.updates = 0

    # ---- actions -------------------------------------------------------------------------------
    def env_actions(self, actions: np.ndarray) -> Any:
        """Policy output (see `Policy.act`) -> what a gymnasium vector env's `step` accepts."""
        if self.layout.kind == "discrete":
            assert isinstance(self.action_space, gym.spaces.Discrete)
            return actions.astype(np.int64) + int(self.action_space.start)
        if self.layout.kind == "box":
            assert isinstance(self.action_space, gym.spaces.Box)
            shaped = actions.reshape(actions.shape[0], *self.action_space.shape)
            return np.clip(shaped, self.action_space.low, self.action_space.high).astype(
                self.action_space.dtype
            )
        assert self.codec is not None
        return self.codec.unflatten(actions)

    def random_actions(self, batch: int) -> np.ndarray:
        """Uniform random actions in the policy's output format (for warm-up and baselines)."""
        columns = [
            self.np_random.integers(0, n, size=(batch, 1)).astype(np.float32)
            for n in self.layout.discrete_sizes
        ]
        if self.layout.n_continuous:
            low, high = self.layout.continuous_low, self.layout.continuous_high
            columns.append(self.np_random.uniform(low, high, size=(batch, low.size)).astype(np.float32))
        flat = np.concatenate(columns, axis=1)
        return flat[:, 0].astype(np.int64) if self.layout.kind == "discrete" else flat

    def sync_targets(self) -> None:
        """Copy online weights into target networks after the policy was trained outside RL (e.g. BC)."""

    # ---- weights for actors -----------------------------------------------------------------------
    def policy_state(self) -> bytes:
        return self.policy.policy_state()

    def load_policy_state(self, blob: bytes) -> None:
        self.policy.load_policy_state(blob)

    # ---- checkpoints --------------------------------------------------------------------------
    def _modules(self) -> dict[str, nn.Module]:
        return {"policy": self.policy}

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def _extra_training_state(self) -> dict[str, Any]:
        """Algorithm-specific state beyond modules and optimizers (buffers, schedules, scalers)."""
        return {}

    def _load_extra_training_state(self, state: dict[str, Any]) -> None:
        del state

    def save_checkpoint(self, path: str | Path, extra: dict[str, Any] | None = None) -> None:
        payload = {
            "algo": self.algo,
            "modules": {name: module.state_dict() for name, module in self._modules().items()},
            "optimizers": {name: opt.state_dict() for name, opt in self._optimizers().items()},
            "counters": {"env_steps": self.env_steps, "updates": self.updates},
            "generator": self.generator.get_state(),
            "np_random": self.np_random.bit_generator.state,
            "global_rng": capture_global_rng(),
            "training": self._extra_training_state(),
            "extra": dict(extra or {}),
        }
        atomic_save(payload, path)

    def load_checkpoint(self, path: str | Path) -> dict[str, Any]:
        payload = load_payload(path, self.device)
        if payload["algo"] != self.algo:
            raise ValueError(f"checkpoint is for {payload['algo']!r}, agent is {self.algo!r}")
        for name, module in self._modules().items():
            module.load_state_dict(payload["modules"][name])
        for name, optimizer in self._optimizers().items():
            optimizer.load_state_dict(payload["optimizers"][name])
        self.env_steps = int(payload["counters"]["env_steps"])
        self.updates = int(payload["counters"]["updates"])
        self.generator.set_state(payload["generator"].cpu())
        self.np_random.bit_generator.state = payload["np_random"]
        restore_global_rng(payload["global_rng"])
        self._load_extra_training_state(payload["training"])
        return dict(payload["extra"])
