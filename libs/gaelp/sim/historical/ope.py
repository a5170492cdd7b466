"""Off-policy estimators of a policy's value from logged bandit data, with bootstrap intervals.

Each estimator is a mean of per-round terms (SNIPW a ratio of two means), so the bootstrap
resamples rounds and recomputes the estimate; the interval is the percentile interval.
    IPW   : w_i r_i,                                   w_i = pi_e(a_i|x_i) / pscore_i
    SNIPW : sum(w_i r_i) / sum(w_i)
    DM    : sum_a pi_e(a|x_i) q(x_i, a)
    DR    : DM_i + w_i (r_i - q(x_i, a_i))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

ESTIMATORS: tuple[str, ...] = ("ipw", "snipw", "dm", "dr")


@dataclass(frozen=True)
class Estimate:
    estimate: float
    ci_low: float
    ci_high: float

    def relative_error(self, truth: float) -> float:
        return abs(self.estimate - truth) / abs(truth)


@dataclass(frozen=True)
class OffPolicyInput:
    reward: np.ndarray  # (n,)
    action: np.ndarray  # (n,) int
    pscore: np.ndarray  # (n,) logging propensity of the logged action
    action_dist: np.ndarray  # (n, K) evaluation policy's probabilities for each row
    estimated_rewards: np.ndarray | None = None  # (n, K) reward model, needed by DM and DR


# Refits the reward model on rows weighted by bootstrap counts; returns its (n, K) predictions.
RewardRefit = Callable[[np.ndarray], np.ndarray]
MODEL_BASED: frozenset[str] = frozenset({"dm", "dr"})


def _terms(
    data: OffPolicyInput, name: str, estimated_rewards: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-round numerator and denominator; the estimate is mean(num) / mean(den)."""
    if name not in ESTIMATORS:
        raise ValueError(f"unknown estimator {name!r}; known: {ESTIMATORS}")
    rows = np.arange(data.reward.shape[0])
    weight = data.action_dist[rows, data.action] / data.pscore
    ones = np.ones_like(data.reward)
    if name == "ipw":
        return weight * data.reward, ones
    if name == "snipw":
        return weight * data.reward, weight
    q = estimated_rewards if estimated_rewards is not None else data.estimated_rewards
    if q is None:
        raise ValueError(f"estimator {name!r} needs estimated_rewards from a reward model")
    direct = (data.action_dist * q).sum(axis=1)
    if name == "dm":
        return direct, ones
    return direct + weight * (data.reward - q[rows, data.action]), ones


def _interval(samples: np.ndarray, alpha: float) -> tuple[float, float]:
    low, high = np.quantile(samples, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def estimate(
    data: OffPolicyInput,
    name: str,
    n_bootstrap: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> Estimate:
    """Point estimate and percentile bootstrap interval over resampled rounds (model held fixed)."""
    numerator, denominator = _terms(data, name)
    n = numerator.shape[0]
    rng = np.random.default_rng(seed)
    samples = np.empty(n_bootstrap)
    chunk = max(1, 2_000_000 // n)  # bounds the memory of the resampling index
    for start in range(0, n_bootstrap, chunk):
        stop = min(start + chunk, n_bootstrap)
        index = rng.integers(0, n, size=(stop - start, n))
        samples[start:stop] = numerator[index].mean(axis=1) / denominator[index].mean(axis=1)
    low, high = _interval(samples, alpha)
    return Estimate(estimate=float(numerator.mean() / denominator.mean()), ci_low=low, ci_high=high)


def estimate_model_based(
    data: OffPolicyInput,
    refit: RewardRefit,
    n_bootstrap: int = 100,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, Estimate]:
    """DM and DR whose bootstrap also refits the reward model on each resample, so the interval
    includes the model's own estimation error (holding the model fixed makes DM look exact)."""
    n = data.reward.shape[0]
    rng = np.random.default_rng(seed)
    samples = {name: np.empty(n_bootstrap) for name in MODEL_BASED}
    for b in range(n_bootstrap):
        counts = np.asarray(rng.poisson(1.0, size=n), dtype=np.float64)  # Poisson bootstrap weights
        refitted = refit(counts)
        for name in MODEL_BASED:
            num, den = _terms(data, name, refitted)
            samples[name][b] = (counts @ num) / (counts @ den)
    results = {}
    for name in sorted(MODEL_BASED):
        num, den = _terms(data, name)
        low, high = _interval(samples[name], alpha)
        results[name] = Estimate(estimate=float(num.mean() / den.mean()), ci_low=low, ci_high=high)
    return results


def estimate_all(
    data: OffPolicyInput,
    n_bootstrap: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    refit: RewardRefit | None = None,
    n_refit_bootstrap: int = 100,
) -> dict[str, Estimate]:
    """IPW and SNIPW, and DM and DR when the input has a reward model (refitted in the bootstrap
    when `refit` is given, else held fixed)."""
    results = {name: estimate(data, name, n_bootstrap, alpha, seed) for name in ("ipw", "snipw")}
    if data.estimated_rewards is None:
        return results
    if refit is not None:
        return results | estimate_model_based(data, refit, n_refit_bootstrap, alpha, seed)
    return results | {name: estimate(data, name, n_bootstrap, alpha, seed) for name in ("dm", "dr")}
