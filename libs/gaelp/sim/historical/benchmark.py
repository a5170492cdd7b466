"""OPE benchmark on the Open Bandit Dataset: value Bernoulli-TS using only the random policy's logs.

The truth is the on-policy click rate of the bts logs. The evaluation policy is BTS's average
action distribution per position. Why the harmonic mean of logged propensities: BTS's propensity
of an item changes over time; among rows where the item was chosen, high-propensity times are
over-represented, so the arithmetic mean is biased up. E[1/p | item chosen] = 1 / E_t[pi_t(item)],
so the harmonic mean estimates the time-averaged probability the policy gives the item.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gaelp.sim.historical.obd import LoggedBanditFeedback, load_obd
from gaelp.sim.historical.ope import Estimate, OffPolicyInput, estimate_all
from gaelp.sim.historical.reward_model import ClickModel


def average_action_distribution(logs: LoggedBanditFeedback) -> np.ndarray:
    """(n_positions, n_actions): the logging policy's time-averaged probability of each item."""
    table = np.zeros((logs.n_positions, logs.n_actions))
    inverse_sum = np.zeros_like(table)
    counts = np.zeros_like(table)
    np.add.at(inverse_sum, (logs.position, logs.action), 1.0 / logs.pscore)
    np.add.at(counts, (logs.position, logs.action), 1.0)
    seen = counts > 0
    table[seen] = counts[seen] / inverse_sum[seen]
    return table / table.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class BenchmarkResult:
    campaign: str
    truth: float
    estimates: dict[str, Estimate]

    def as_dict(self) -> dict[str, object]:
        return {
            "truth": self.truth,
            "estimators": {
                name: {
                    "estimate": e.estimate,
                    "ci_low": e.ci_low,
                    "ci_high": e.ci_high,
                    "relative_error": e.relative_error(self.truth),
                }
                for name, e in self.estimates.items()
            },
        }


def run_obd_benchmark(
    root: str | Path, campaign: str, n_bootstrap: int = 1000, seed: int = 0, n_refit_bootstrap: int = 100
) -> BenchmarkResult:
    random_logs = load_obd(root, "random", campaign)
    bts_logs = load_obd(root, "bts", campaign)
    policy = average_action_distribution(bts_logs)
    model = ClickModel().fit(random_logs)
    data = OffPolicyInput(
        reward=random_logs.reward,
        action=random_logs.action,
        pscore=random_logs.pscore,
        action_dist=policy[random_logs.position],
        estimated_rewards=model.predict_all_actions(random_logs),
    )
    return BenchmarkResult(
        campaign=campaign,
        truth=float(bts_logs.reward.mean()),
        estimates=estimate_all(
            data,
            n_bootstrap=n_bootstrap,
            seed=seed,
            refit=lambda counts: model.refit(random_logs, counts),
            n_refit_bootstrap=n_refit_bootstrap,
        ),
    )
