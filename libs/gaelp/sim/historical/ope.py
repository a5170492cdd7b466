"""Off-policy estimators of a policy's value from logged bandit data, with 95% intervals.

Each estimator is a ratio of two means of per-round terms, mean(num) / mean(den) (den = 1 except
for SNIPW):
    IPW   : w_i r_i,                                   w_i = pi_e(a_i|x_i) / pscore_i
    SNIPW : sum(w_i r_i) / sum(w_i)
    DM    : sum_a pi_e(a|x_i) q(x_i, a)
    DR    : DM_i + w_i (r_i - q(x_i, a_i))
Rounds that share a cluster (the hours and days of one campaign) are correlated, so every interval
treats clusters, not rounds, as the independent units: an interval built from rounds one by one
understates the variance and undercovers.

IPW and SNIPW (`cluster_robust_estimate`): their terms are known per round, so the large-sample
variance of the ratio V = sum(num) / sum(den) is the delta method's, with the rounds' linearized
terms summed within clusters (cluster-robust):
    Var(V) = G / (G - 1) * sum_g (sum_{i in g} num_i - V den_i)^2 / (sum_i den_i)^2
(for SNIPW num_i - V den_i = w_i (r_i - V)), and the interval is V -/+ t_{G-1} sqrt(Var(V)).
G / (G - 1) and Student's t with G - 1 degrees of freedom are the usual small-sample corrections
for G clusters (Cameron and Miller 2015); both vanish as G grows. The interval has no resampling
noise, which a percentile bootstrap's 2.5% and 97.5% quantiles of a few hundred draws carry.
DM and DR with a reward model that is refitted (`estimate_model_based`): their variance includes
the model's own estimation error, which has no closed form here, so a bootstrap over clusters
refits the model on each resample and the interval is the percentile interval (`estimate` is that
bootstrap with the model held fixed, which `estimate_all` uses for DM and DR without a refit).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats

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
    cluster: np.ndarray | None = None  # (n,) int cluster of each round (its campaign); None: independent

    def cluster_index(self) -> tuple[np.ndarray, int]:
        """Each round's cluster as 0..G-1, and G (rounds are their own clusters when none are given)."""
        if self.cluster is None:
            n = self.reward.shape[0]
            return np.arange(n), n
        _, index = np.unique(self.cluster, return_inverse=True)
        return index.reshape(-1), int(index.max()) + 1


# Refits the reward model on rows weighted by bootstrap counts (each row gets its cluster's count);
# returns its (n, K) predictions.
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


def cluster_robust_estimate(data: OffPolicyInput, name: str, alpha: float = 0.05) -> Estimate:
    """Point estimate and delta-method interval with cluster-robust variance (module docstring)."""
    numerator, denominator = _terms(data, name)
    index, clusters = data.cluster_index()
    if clusters < 2:
        raise ValueError("a cluster-robust interval needs at least 2 clusters")
    total = float(denominator.sum())
    value = float(numerator.sum()) / total
    # The ratio's linearization: each round contributes (num_i - V den_i) / sum(den); clusters are
    # the independent units, so their summed contributions are what varies.
    influence = np.bincount(index, weights=numerator - value * denominator, minlength=clusters)
    variance = clusters / (clusters - 1) * float(influence @ influence) / total**2
    half_width = float(stats.t.ppf(1 - alpha / 2, clusters - 1)) * variance**0.5
    return Estimate(estimate=value, ci_low=value - half_width, ci_high=value + half_width)


def estimate(
    data: OffPolicyInput,
    name: str,
    n_bootstrap: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> Estimate:
    """Point estimate and percentile bootstrap interval over resampled clusters (model held fixed)."""
    numerator, denominator = _terms(data, name)
    index, clusters = data.cluster_index()
    # A resample of clusters only needs each cluster's sums: sum(num) / sum(den) over the draw.
    cluster_num = np.bincount(index, weights=numerator, minlength=clusters)
    cluster_den = np.bincount(index, weights=denominator, minlength=clusters)
    rng = np.random.default_rng(seed)
    samples = np.empty(n_bootstrap)
    chunk = max(1, 2_000_000 // clusters)  # bounds the memory of the resampling index
    for start in range(0, n_bootstrap, chunk):
        stop = min(start + chunk, n_bootstrap)
        draw = rng.integers(0, clusters, size=(stop - start, clusters))
        samples[start:stop] = cluster_num[draw].sum(axis=1) / cluster_den[draw].sum(axis=1)
    low, high = _interval(samples, alpha)
    return Estimate(estimate=float(numerator.mean() / denominator.mean()), ci_low=low, ci_high=high)


def estimate_model_based(
    data: OffPolicyInput,
    refit: RewardRefit,
    n_bootstrap: int = 100,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, Estimate]:
    """DM and DR whose bootstrap also refits the reward model on each resample (of clusters), so
    the interval includes the model's own estimation error (holding the model fixed makes DM look
    exact)."""
    index, clusters = data.cluster_index()
    rng = np.random.default_rng(seed)
    samples = {name: np.empty(n_bootstrap) for name in MODEL_BASED}
    for b in range(n_bootstrap):
        drawn = np.bincount(rng.integers(0, clusters, size=clusters), minlength=clusters)
        counts = drawn[index].astype(np.float64)  # each round weighs as often as its cluster was drawn
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
    """IPW and SNIPW (delta-method, cluster-robust intervals), and DM and DR when the input has a
    reward model (bootstrap intervals over clusters, refitting the model when `refit` is given,
    else holding it fixed)."""
    results = {name: cluster_robust_estimate(data, name, alpha) for name in ("ipw", "snipw")}
    if data.estimated_rewards is None:
        return results
    if refit is not None:
        return results | estimate_model_based(data, refit, n_refit_bootstrap, alpha, seed)
    return results | {name: estimate(data, name, n_bootstrap, alpha, seed) for name in ("dm", "dr")}
