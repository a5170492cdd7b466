"""Off-policy estimators of a policy's value from logged bandit data, with bootstrap intervals.

Each estimator is a mean of per-round terms (SNIPW a ratio of two means), so the bootstrap
resamples rounds and recomputes the estimate; the interval is the percentile interval.
    IPW   : w_i r_i,                                   w_i = pi_e(a_i|x_i) / pscore_i
    SNIPW : sum(w_i r_i) / sum(w_i)
    DM    : sum_a pi_e(a|x_i) q(x_i, a)
    DR    : DM_i + w_i (r_i - q(x_i, a_i))
"""

from __future__ import annotations

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


def _terms(data: OffPolicyInput, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-round numerator and denominator; the estimate is mean(num) / mean(den)."""
    rows = np.arange(data.reward.shape[0])
    weight = data.action_dist[rows, data.action] / data.pscore
    ones = np.ones_like(data.reward)
    if name == "ipw":
        return weight * data.reward, ones
    if name == "snipw":
        return weight * data.reward, weight
    if data.estimated_rewards is None:
        raise ValueError(f"estimator {name!r} needs estimated_rewards from a reward model")
    direct = (data.action_dist * data.estimated_rewards).sum(axis=1)
    if name == "dm":
        return direct, ones
    if name == "dr":
        return direct + weight * (data.reward - data.estimated_rewards[rows, data.action]), ones
    raise ValueError(f"unknown estimator {name!r}; known: {ESTIMATORS}")


def estimate(
    data: OffPolicyInput,
    name: str,
    n_bootstrap: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> Estimate:
    numerator, denominator = _terms(data, name)
    n = numerator.shape[0]
    point = float(numerator.mean() / denominator.mean())
    rng = np.random.default_rng(seed)
    samples = np.empty(n_bootstrap)
    chunk = max(1, 2_000_000 // n)  # bounds the memory of the resampling index
    for start in range(0, n_bootstrap, chunk):
        stop = min(start + chunk, n_bootstrap)
        index = rng.integers(0, n, size=(stop - start, n))
        samples[start:stop] = numerator[index].mean(axis=1) / denominator[index].mean(axis=1)
    low, high = np.quantile(samples, [alpha / 2, 1 - alpha / 2])
    return Estimate(estimate=point, ci_low=float(low), ci_high=float(high))


def estimate_all(
    data: OffPolicyInput, n_bootstrap: int = 1000, alpha: float = 0.05, seed: int = 0
) -> dict[str, Estimate]:
    names = ESTIMATORS if data.estimated_rewards is not None else ("ipw", "snipw")
    return {name: estimate(data, name, n_bootstrap, alpha, seed) for name in names}
