"""Action-space layouts and the hybrid action codec.

Every agent works on one flat float action per sample, `[B, D]`:

* `Discrete(n)`: D = 1, the choice index (actors receive int64 `[B]` from `policy.act`).
* `Box(shape)`: D = prod(shape), values in env units.
* Hybrid `Dict`/`Tuple` of `Discrete` and `Box` entries (the ad action of docs/architecture.md): first one
  column per `Discrete` entry holding its index (in the space's own entry order), then the flattened
  `Box` entries (same order). `HybridActionCodec` converts between that flat tensor and the dict/tuple
  the environment expects, so hybrid actions travel as one float32 tensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from gymnasium import spaces

ActionKind = Literal["discrete", "box", "hybrid"]


def _entries(space: spaces.Dict | spaces.Tuple) -> list[tuple[str | int, spaces.Space[Any]]]:
    if isinstance(space, spaces.Dict):
        return list(space.spaces.items())
    return list(enumerate(space.spaces))


class HybridActionCodec:
    """Flat float32 `[B, D]` <-> batched dict (or tuple) of arrays for a Dict/Tuple action space."""

    def __init__(self, space: spaces.Dict | spaces.Tuple) -> None:
        if not isinstance(space, spaces.Dict | spaces.Tuple):
            raise TypeError(f"hybrid codec needs a Dict or Tuple space, got {type(space).__name__}")
        self.space = space
        self.discrete: list[tuple[str | int, spaces.Discrete]] = []
        self.boxes: list[tuple[str | int, spaces.Box]] = []
        for key, sub in _entries(space):
            if isinstance(sub, spaces.Discrete):
                self.discrete.append((key, sub))
            elif isinstance(sub, spaces.Box):
                self.boxes.append((key, sub))
            else:
                raise TypeError(f"entry {key!r}: only Discrete and Box entries are supported")
        self.discrete_sizes: list[int] = [int(sub.n) for _, sub in self.discrete]
        low = [np.asarray(sub.low, dtype=np.float64).reshape(-1) for _, sub in self.boxes]
        high = [np.asarray(sub.high, dtype=np.float64).reshape(-1) for _, sub in self.boxes]
        self.continuous_low = np.concatenate(low) if low else np.zeros(0)
        self.continuous_high = np.concatenate(high) if high else np.zeros(0)
        self.flat_dim = len(self.discrete) + int(self.continuous_low.size)

    def flatten(self, action: dict[str, np.ndarray] | tuple[np.ndarray, ...]) -> np.ndarray:
        """Batched dict/tuple (leading batch dim B on every entry) -> float32 `[B, D]`."""
        columns: list[np.ndarray] = []
        for key, sub in self.discrete:
            value = np.asarray(action[key]).reshape(-1) - int(sub.start)  # type: ignore[index]
            columns.append(value.astype(np.float32)[:, None])
        for key, box in self.boxes:
            value = np.asarray(action[key], dtype=np.float32)  # type: ignore[index]
            columns.append(value.reshape(value.shape[0], int(np.prod(box.shape))))
        return np.concatenate(columns, axis=1).astype(np.float32, copy=False)

    def unflatten(self, flat: np.ndarray) -> dict[str, np.ndarray] | tuple[np.ndarray, ...]:
        """float `[B, D]` -> batched dict/tuple; indices are rounded and clipped, boxes clipped to bounds."""
        flat = np.asarray(flat)
        out: dict[str | int, np.ndarray] = {}
        for column, (key, sub) in enumerate(self.discrete):
            index = np.clip(np.rint(flat[:, column]), 0, int(sub.n) - 1).astype(np.int64)
            out[key] = index + int(sub.start)
        offset = len(self.discrete)
        for key, box in self.boxes:
            size = int(np.prod(box.shape))
            value = flat[:, offset : offset + size].reshape(flat.shape[0], *box.shape)
            out[key] = np.clip(value, box.low, box.high).astype(box.dtype)
            offset += size
        if isinstance(self.space, spaces.Tuple):
            return tuple(out[index] for index in range(len(self.space.spaces)))
        return {str(key): value for key, value in out.items()}

    def unflatten_one(self, flat: np.ndarray) -> dict[str, Any] | tuple[Any, ...]:
        """A single flat action `[D]` -> one env action (no batch dimension)."""
        batched = self.unflatten(np.asarray(flat)[None, :])
        if isinstance(batched, tuple):
            return tuple(value[0] for value in batched)
        return {key: value[0] for key, value in batched.items()}


@dataclass(frozen=True)
class ActionLayout:
    """What the networks need to know about an action space, in flat-encoding terms."""

    kind: ActionKind
    discrete_sizes: tuple[int, ...]
    continuous_low: np.ndarray
    continuous_high: np.ndarray

    @property
    def n_discrete(self) -> int:
        return len(self.discrete_sizes)

    @property
    def n_continuous(self) -> int:
        return int(self.continuous_low.size)

    @property
    def flat_dim(self) -> int:
        return self.n_discrete + self.n_continuous

    @property
    def one_hot_dim(self) -> int:
        """Width of the critic's action input: one-hot per discrete entry, then the continuous values."""
        return sum(self.discrete_sizes) + self.n_continuous

    @classmethod
    def from_space(cls, space: spaces.Space[Any]) -> ActionLayout:
        if isinstance(space, spaces.Discrete):
            return cls("discrete", (int(space.n),), np.zeros(0), np.zeros(0))
        if isinstance(space, spaces.Box):
            low = np.asarray(space.low, dtype=np.float64).reshape(-1)
            high = np.asarray(space.high, dtype=np.float64).reshape(-1)
            return cls("box", (), low, high)
        if isinstance(space, spaces.Dict | spaces.Tuple):
            codec = HybridActionCodec(space)
            return cls("hybrid", tuple(codec.discrete_sizes), codec.continuous_low, codec.continuous_high)
        raise TypeError(f"unsupported action space {space!r}")


def flat_observation_dim(space: spaces.Space[Any]) -> int:
    """Agents take flat float observations; Box spaces of any shape are flattened."""
    if not isinstance(space, spaces.Box):
        raise TypeError(f"observations must be a Box space, got {type(space).__name__}")
    return int(np.prod(space.shape))
