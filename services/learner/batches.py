"""Decoding and validating TransitionBatch messages into numpy columns (zero-copy views)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gaelp.bus.tensors import TensorError, from_tensor
from gaelp.rl.spaces import ActionLayout
from gaelp.v1 import common_pb2, events_pb2


class InvalidBatch(ValueError):
    """A batch that must not be trained on (wrong shape, non-finite values, missing ids)."""


@dataclass(frozen=True)
class DecodedBatch:
    run_id: str
    actor_id: str
    batch_id: str
    policy_version: int
    task: str
    phase: int                # the run's phase when the batch was collected (training.phases)
    obs: np.ndarray           # [T, N, D]
    actions: np.ndarray       # [T, N, A] (or [T, N] for Discrete)
    rewards: np.ndarray       # [T, N]
    dones: np.ndarray         # [T, N]
    truncations: np.ndarray   # [T, N]
    log_probs: np.ndarray     # [T, N]
    values: np.ndarray        # [T, N]
    next_obs: np.ndarray      # [N, D] on-policy bootstrap, or [T, N, D] for off-policy use
    next_values: np.ndarray | None
    raw: bytes               # the message as it arrived, kept for checkpoints of pending batches

    @property
    def steps(self) -> int:
        return int(self.rewards.shape[0])

    @property
    def episodes(self) -> int:
        """Episodes that ended in the batch (terminated or truncated)."""
        return int(np.count_nonzero(np.maximum(self.dones, self.truncations)))

    @property
    def lanes(self) -> int:
        return int(self.rewards.shape[1])

    @property
    def samples(self) -> int:
        return self.steps * self.lanes


def _column(message: events_pb2.TransitionBatch, field: str) -> np.ndarray:
    if not message.HasField(field):  # type: ignore[arg-type]  # callers name TransitionBatch fields
        raise InvalidBatch(f"{field} is missing")
    try:
        return from_tensor(getattr(message, field), field)
    except TensorError as error:
        raise InvalidBatch(str(error)) from error


def _expect_shape(name: str, array: np.ndarray, shape: tuple[int, ...]) -> None:
    if array.shape != shape:
        raise InvalidBatch(f"{name} has shape {array.shape}, expected {shape}")


def decode_batch(
    message: events_pb2.TransitionBatch, obs_dim: int, layout: ActionLayout, raw: bytes
) -> DecodedBatch:
    """Decode and check everything the trainer relies on; raise InvalidBatch otherwise."""
    for name in ("run_id", "actor_id", "batch_id"):
        if not getattr(message, name):
            raise InvalidBatch(f"{name} is empty")
    if message.policy_version < 0:
        raise InvalidBatch(f"policy_version {message.policy_version} is negative")
    rewards = _column(message, "rewards")
    if rewards.ndim != 2 or rewards.shape[0] == 0 or rewards.shape[1] == 0:
        raise InvalidBatch(f"rewards must be [T, N] with T, N > 0, got {rewards.shape}")
    steps, lanes = rewards.shape
    obs = _column(message, "observations")
    _expect_shape("observations", obs, (steps, lanes, obs_dim))
    actions = _column(message, "actions")
    # Discrete actions travel as [T, N] indices; Box and hybrid ones as flat [T, N, A] floats.
    expected = (steps, lanes) if layout.kind == "discrete" else (steps, lanes, layout.flat_dim)
    _expect_shape("actions", actions, expected)
    columns = {name: _column(message, name) for name in ("dones", "truncations", "log_probs", "values")}
    for name, array in columns.items():
        _expect_shape(name, array, (steps, lanes))
    next_obs = _column(message, "next_observations")
    if next_obs.shape not in {(lanes, obs_dim), (steps, lanes, obs_dim)}:
        raise InvalidBatch(f"next_observations has shape {next_obs.shape}, expected [N, D] or [T, N, D]")
    next_values = _column(message, "next_values") if message.HasField("next_values") else None
    if next_values is not None:
        _expect_shape("next_values", next_values, (lanes,))
    arrays = {"observations": obs, "actions": actions, "rewards": rewards, "next_observations": next_obs,
              **columns}
    if next_values is not None:
        arrays["next_values"] = next_values
    for name, array in arrays.items():
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise InvalidBatch(f"{name} contains NaN or infinite values")
    return DecodedBatch(
        run_id=message.run_id,
        actor_id=message.actor_id,
        batch_id=message.batch_id,
        policy_version=message.policy_version,
        task=message.task,
        phase=message.phase or common_pb2.PHASE_SIMULATION,
        obs=obs.astype(np.float32, copy=False),
        actions=actions.astype(np.float32, copy=False),
        rewards=rewards.astype(np.float32, copy=False),
        dones=columns["dones"].astype(np.float32, copy=False),
        truncations=columns["truncations"].astype(np.float32, copy=False),
        log_probs=columns["log_probs"].astype(np.float32, copy=False),
        values=columns["values"].astype(np.float32, copy=False),
        next_obs=next_obs.astype(np.float32, copy=False),
        next_values=None if next_values is None else next_values.astype(np.float32, copy=False),
        raw=raw,
    )
