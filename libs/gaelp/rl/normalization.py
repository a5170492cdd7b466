"""State processing: running mean/std observation normalization and return-based reward scaling.

`ObservationNormalizer` is an `nn.Module` that lives inside each policy, so its statistics travel
with `policy_state()` to the actors and every consumer normalizes identically. It is robust to:

* NaN/inf: non-finite entries are excluded from the statistics (per feature) and map to 0 (the mean).
* outliers: after `warmup` samples, incoming values are winsorized to mean +- `outlier_sigma` std
  before they update the statistics, and normalized outputs are clipped to +- `clip`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from gaelp.config.sections.algorithms import NormalizationConfig

__all__ = ["NormalizationConfig", "ObservationNormalizer", "ReturnScaler", "RunningMeanStd"]


class RunningMeanStd(nn.Module):
    """Per-feature running mean and variance (parallel Welford), with per-feature counts for NaN."""

    mean: torch.Tensor
    var: torch.Tensor
    count: torch.Tensor

    def __init__(self, shape: tuple[int, ...], outlier_sigma: float = 8.0, warmup: int = 100) -> None:
        super().__init__()
        self.outlier_sigma = outlier_sigma
        self.warmup = warmup
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("count", torch.zeros(shape, dtype=torch.float64))

    @torch.no_grad()
    def update(self, batch: torch.Tensor) -> None:
        """Fold a batch `[B, *shape]` into the statistics; no host synchronisation."""
        x = batch.to(torch.float64).reshape(-1, *self.mean.shape)
        finite = torch.isfinite(x)
        std = self.var.sqrt()
        bound = self.outlier_sigma * std
        winsorize = (self.count >= self.warmup) & (std > 0)
        clipped = torch.minimum(torch.maximum(x, self.mean - bound), self.mean + bound)
        x = torch.where(winsorize, clipped, x)
        x = torch.where(finite, x, torch.zeros_like(x))
        n = finite.sum(0).to(torch.float64)
        safe_n = n.clamp(min=1.0)
        batch_mean = x.sum(0) / safe_n
        batch_var = (((x - batch_mean) ** 2) * finite).sum(0) / safe_n
        total = self.count + n
        delta = batch_mean - self.mean
        new_mean = self.mean + delta * n / total.clamp(min=1.0)
        m2 = self.var * self.count + batch_var * n + delta**2 * self.count * n / total.clamp(min=1.0)
        new_var = m2 / total.clamp(min=1.0)
        has_data = n > 0
        self.mean.copy_(torch.where(has_data, new_mean, self.mean))
        self.var.copy_(torch.where(has_data, new_var, self.var))
        self.count.copy_(total)


class ObservationNormalizer(nn.Module):
    """(obs - mean) / std, clipped, NaN -> 0. Identity (apart from NaN -> 0) when disabled."""

    def __init__(self, obs_dim: int, config: NormalizationConfig) -> None:
        super().__init__()
        self.enabled = config.normalize_observations
        self.clip = config.clip
        self.stats = RunningMeanStd((obs_dim,), config.outlier_sigma, config.warmup)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return torch.nan_to_num(obs, nan=0.0, posinf=0.0, neginf=0.0)
        mean = self.stats.mean.to(obs.dtype)
        std = (self.stats.var + 1e-8).sqrt().to(obs.dtype)
        normalized = ((obs - mean) / std).clamp(-self.clip, self.clip)
        return torch.nan_to_num(normalized, nan=0.0, posinf=self.clip, neginf=-self.clip)

    def update(self, obs: torch.Tensor) -> None:
        if self.enabled:
            self.stats.update(obs)


class ReturnScaler:
    """Scales rewards by the running std of each lane's discounted return (as in VecNormalize).

    Works on columnar `[T, N]` numpy rewards so it serves both the env loop and the learner's batches;
    it keeps one running return per lane across calls.
    """

    def __init__(self, gamma: float, clip: float) -> None:
        self.gamma = gamma
        self.clip = clip
        self.returns: np.ndarray | None = None
        self.mean = 0.0
        self.var = 1.0
        self.count = 1e-4

    def __call__(self, rewards: np.ndarray, dones: np.ndarray) -> np.ndarray:
        rewards = np.nan_to_num(np.asarray(rewards, dtype=np.float64))
        if self.returns is None or self.returns.shape != rewards.shape[1:]:
            self.returns = np.zeros(rewards.shape[1:], dtype=np.float64)
        history = np.empty_like(rewards)
        for t in range(rewards.shape[0]):
            self.returns = self.returns * self.gamma + rewards[t]
            history[t] = self.returns
            self.returns = np.where(dones[t], 0.0, self.returns)
        self._update(history.reshape(-1))
        return np.clip(rewards / np.sqrt(self.var + 1e-8), -self.clip, self.clip).astype(np.float32)

    def _update(self, values: np.ndarray) -> None:
        n = values.size
        batch_mean, batch_var = float(values.mean()), float(values.var())
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean += delta * n / total
        self.var = (self.var * self.count + batch_var * n + delta**2 * self.count * n / total) / total
        self.count = total

    def state_dict(self) -> dict[str, Any]:
        return {"returns": self.returns, "mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.returns, self.mean, self.var, self.count = (
            state["returns"],
            state["mean"],
            state["var"],
            state["count"],
        )
