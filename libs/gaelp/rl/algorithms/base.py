"""The agent contract the learner, the actors and `learn` use, and what every agent shares.

Acting (actors, evaluation):
    agent.explore(obs) -> (actions, log_probs, values)   # the training-time behaviour: sampling,
                                                         # epsilon-greedy, random warm-up
    agent.act(obs, deterministic=True) -> (actions, log_probs, values)
    agent.state_values(obs) -> values                    # bootstrap values for on-policy learners
    agent.env_actions(actions) -> what the env's `step` takes
    agent.policy_state() -> bytes, agent.load_policy_state(bytes)
        # weights, observation statistics and the env-step count that exploration schedules read:
        # everything an actor needs to behave as the learner's agent would
Training (one update path, used by `learn` and by the learner service):
    agent.rollout_steps() -> int     # vector steps one update consumes (PPO n_steps, else train_freq)
    agent.add_rollout(rollout)       # PPO keeps it for the next update; SAC/DQN store it in replay
    agent.update() -> dict[str, float]
Checkpoints:
    agent.save_checkpoint(path, extra: dict | None = None) -> None   # atomic: tmp file + rename
    agent.load_checkpoint(path) -> dict                               # returns `extra`

A user's own agent subclasses `Agent`, takes `(observation_space, action_space, config: dict,
device, seed)` and is named by `training.agent_entry_point` (see docs/agents.md).
"""

from __future__ import annotations

import contextlib
import io
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from gaelp.rl.checkpoint import atomic_save, capture_global_rng, load_payload, restore_global_rng
from gaelp.rl.device import resolve_device
from gaelp.rl.policies import Policy
from gaelp.rl.rollout import Rollout, RolloutCollector
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


def make_adam(parameters: Sequence[torch.Tensor], lr: float, eps: float = 1e-8) -> torch.optim.Adam:
    """Adam with the fused kernel (one call per step instead of a Python loop over tensors)."""
    return torch.optim.Adam(parameters, lr=lr, eps=eps, fused=True)


class Agent(ABC):
    algo: ClassVar[str] = ""
    """names the algorithm in checkpoints, policy messages and metrics"""
    on_policy: ClassVar[bool] = False
    """True: trains only on data of (nearly) its current policy, so the learner drops stale batches"""
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
        self.codec = (
            HybridActionCodec(action_space)
            if isinstance(action_space, (gym.spaces.Dict, gym.spaces.Tuple))
            else None
        )
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        self.np_random = np.random.default_rng(seed)
        self.env_steps = 0
        self.updates = 0
        self.acted_steps = 0
        """steps acted since the last `add_rollout` or policy load: exploration schedules read
        `env_steps + acted_steps`, so actors follow them between policy versions"""
        self.update_epochs: int | None = None
        """passes over each update's data set by the run's phase (None: the algorithm's own)"""
        self.learning_rate_scale = 1.0
        """factor on the algorithm's learning rate set by the run's phase"""

    # ---- the training contract ----------------------------------------------------------------
    @abstractmethod
    def rollout_steps(self) -> int:
        """Vector steps of data one update consumes."""

    @abstractmethod
    def add_rollout(self, rollout: Rollout) -> None:
        """Take collected data; counts its samples into `env_steps`."""

    @abstractmethod
    def update(self) -> dict[str, float]:
        """Train on what `add_rollout` gave since the last update; the stats of what it did."""

    def configure_updates(self, epochs: int | None, learning_rate_scale: float) -> None:
        """What the run's phase asks of the next updates (training.phases): an agent's update reads
        `update_epochs` and `learning_rate_scale`."""
        self.update_epochs, self.learning_rate_scale = epochs, learning_rate_scale

    def learn(
        self,
        env: gym.vector.VectorEnv,
        total_steps: int,
        callback: Callable[[Agent, dict[str, float]], None] | None = None,
    ) -> RolloutCollector:
        """Collect `rollout_steps()` per lane, hand it over, update: the same path the learner takes."""
        collector = RolloutCollector(env, self.seed)
        target = self.env_steps + total_steps
        while self.env_steps < target:
            self.add_rollout(collector.collect(self, self.rollout_steps()))
            stats = self.update()
            if stats and callback is not None:
                callback(self, {**stats, **collector.recent_return_stats()})
        return collector

    def _count_added(self, samples: int) -> None:
        self.env_steps += samples
        self.acted_steps = max(0, self.acted_steps - samples)

    # ---- acting --------------------------------------------------------------------------------
    @property
    def schedule_steps_seen(self) -> int:
        return self.env_steps + self.acted_steps

    def explore(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The behaviour policy of training (here: sampling from the policy)."""
        self.acted_steps += len(obs)
        return self.policy.act(obs, deterministic=False)

    def act(self, obs: np.ndarray, deterministic: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.policy.act(obs, deterministic=deterministic)

    def state_values(self, obs: np.ndarray) -> np.ndarray:
        """Value estimates `[B]` of observations (the critic's, or the greedy Q value)."""
        return self.policy.act(obs, deterministic=True)[2]

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
        """Copy online weights into target networks after the policy was trained outside RL (e.g. BC);
        agents without target networks have nothing to copy."""
        return None

    # ---- weights for actors -----------------------------------------------------------------------
    def policy_state(self) -> bytes:
        buffer = io.BytesIO()
        torch.save({"policy": self.policy.policy_state(), "env_steps": self.env_steps}, buffer)
        return buffer.getvalue()

    def load_policy_state(self, blob: bytes) -> None:
        state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
        self.policy.load_policy_state(state["policy"])
        self.env_steps, self.acted_steps = int(state["env_steps"]), 0

    # ---- checkpoints --------------------------------------------------------------------------
    def _modules(self) -> dict[str, nn.Module]:
        return {"policy": self.policy}

    @abstractmethod
    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Every optimizer, by name, for checkpoints."""

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


class ReplayAgent(Agent):
    """Off-policy agents (SAC, DQN): rollouts go to a replay buffer; after `learning_starts` env steps,
    `gradient_steps` gradient steps per `train_freq` vector steps received. On the learner, rollouts
    arrive in chunks of many vector steps, so the steps owed are carried over and taken together."""

    learning_starts: int
    train_freq: int
    gradient_steps: int

    def __init__(
        self,
        observation_space: gym.Space[Any],
        action_space: gym.Space[Any],
        device: str | torch.device,
        seed: int,
    ) -> None:
        super().__init__(observation_space, action_space, device, seed)
        self.owed_vector_steps = 0

    @abstractmethod
    def add_transitions(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        dones: np.ndarray,
        truncations: np.ndarray,
        next_obs: np.ndarray,
    ) -> None:
        """Store `[T, N, ...]` transitions in the replay buffer."""

    @abstractmethod
    def train_steps(self, n: int) -> dict[str, float]:
        """`n` gradient steps on replayed minibatches."""

    def rollout_steps(self) -> int:
        return self.train_freq

    def add_rollout(self, rollout: Rollout) -> None:
        self.add_transitions(
            rollout.obs,
            rollout.actions,
            rollout.rewards,
            rollout.dones,
            rollout.truncations,
            rollout.next_obs,
        )
        if self.env_steps >= self.learning_starts:
            self.owed_vector_steps += rollout.steps

    def update(self) -> dict[str, float]:
        rounds, self.owed_vector_steps = divmod(self.owed_vector_steps, self.train_freq)
        if rounds == 0:
            return {}
        return self.train_steps(rounds * (self.update_epochs or self.gradient_steps))
