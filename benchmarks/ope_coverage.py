"""How often each off-policy estimator's 95% interval covers the true value of an agent's policy.

The sandbox market knows its own truth. Logs come from one market (the logging policy picks
creative x audience uniformly, so propensities are known) and are scored the way phase 2 scores
them (orchestrator.phase2.historical_figures). The truth is the estimand of those estimators: the
policy's expected clicks per campaign-hour at the states the logging policy visits in that market,
with the logs' fixed continuous actions (gaelp.sim.historical.evaluator.policy_value), on
an independent, larger sample of campaigns. Its standard error is reported next to it: a truth
much noisier than the estimators would make coverage look worse than it is.
Over N seeds (fresh logs and a freshly seeded agent policy each time; with --checkpoint the trained
agent's own policy, a learner checkpoint, and fresh logs) the benchmark counts, per
estimator (IPS, SNIPS, DM, DR), the seeds whose interval contains the truth, with a 95%
Clopper-Pearson interval for that coverage (20 seeds are few: an interval that covers 95% of the
time shows as 0.85 to 1.0 in 95% of 20-seed runs, and as 0.80 or less in 1.6%), and the mean width
of the estimator's interval. Campaigns and days per log default to phase 2's
(orchestrator.phases.historical); the logs come from curriculum level --level's market, or with
--sandbox from the platform sandbox's market, as phase 2 draws them (the simulator level is then
phase 2's simulator_level).

    OPENBLAS_NUM_THREADS=1 python -m benchmarks.ope_coverage --seeds 20 --out FILE.json
    OPENBLAS_NUM_THREADS=1 python -m benchmarks.ope_coverage --sandbox --checkpoint RUN/ckpt-N/run-0.pt

(One BLAS thread: the DM/DR refits are small products and solves, which threads only slow down on
a shared machine.)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from scipy import stats

from benchmarks.phase2_calibration import load_agent
from gaelp.config import load_settings
from gaelp.rl.factory import make_agent
from gaelp.sim.historical.evaluator import policy_value
from gaelp.sim.market.config import MarketConfig, curriculum_level
from gaelp.sim.market.env import AdMarketVectorEnv
from gaelp.sim.platform.sandbox_market import sandbox_market_config
from orchestrator.evaluation import deterministic_policy
from orchestrator.phase2 import AGENT, historical_figures

TRUTH_SEED_OFFSET = 1_000_003  # the truth's campaigns are drawn apart from the logs' and the simulator's
ESTIMATOR_INTERVALS = {"ipw": "delta method, cluster-robust", "snipw": "delta method, cluster-robust",
                       "dm": "cluster bootstrap, model refitted", "dr": "cluster bootstrap, model refitted"}


def clopper_pearson(successes: int, trials: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact binomial interval for a coverage rate seen as successes / trials."""
    low = stats.beta.ppf(alpha / 2, successes, trials - successes + 1) if successes > 0 else 0.0
    high = stats.beta.ppf(1 - alpha / 2, successes + 1, trials - successes) if successes < trials else 1.0
    return float(low), float(high)


def logged_market(level: int, sandbox: bool) -> tuple[MarketConfig, int]:
    """The market the logs come from and the simulator level phase 2 scores them against."""
    if sandbox:
        return sandbox_market_config(), load_settings().orchestrator.phases.historical.simulator_level
    return curriculum_level(level), level


def seeded_agent(seed: int, level: int) -> Any:
    """A freshly seeded agent as the learner builds it from the default settings."""
    settings = load_settings()
    env = AdMarketVectorEnv(num_envs=1, level=level, seed=0)
    torch.manual_seed(seed)
    return make_agent(settings.training.algorithm, env.single_observation_space, env.single_action_space,
                      settings.training.algorithm_config(), device="cpu", seed=seed)


def coverage(seeds: int, level: int, campaigns: int, days: int, truth_campaigns: int,
             first_seed: int = 0, checkpoint: Path | None = None, sandbox: bool = False) -> dict[str, object]:
    market, simulator_level = logged_market(level, sandbox)
    trained = load_agent(checkpoint) if checkpoint is not None else None
    covered = {"ipw": 0, "snipw": 0, "dm": 0, "dr": 0}
    widths: dict[str, float] = dict.fromkeys(covered, 0.0)
    per_seed = []
    for seed in range(first_seed, first_seed + seeds):
        agent = trained if trained is not None else seeded_agent(seed, simulator_level)
        figures = historical_figures(agent, simulator_level, campaigns, days, seed, 0.15,
                                     logged_market=market)
        truth = policy_value(deterministic_policy(agent), market, truth_campaigns, days,
                             TRUTH_SEED_OFFSET + seed)
        row: dict[str, object] = {"seed": seed, "truth": truth.value,
                                  "truth_standard_error": truth.standard_error,
                                  "simulator_prediction": figures.predicted[AGENT]}
        for name, estimate in figures.estimates[AGENT].items():
            inside = estimate.ci_low <= truth.value <= estimate.ci_high
            covered[name] += inside
            widths[name] += estimate.ci_high - estimate.ci_low
            row[name] = {"estimate": estimate.estimate, "ci_low": estimate.ci_low,
                         "ci_high": estimate.ci_high, "covers": inside}
        per_seed.append(row)
        print(f"seed {seed}: truth {truth.value:.3f} ± {truth.standard_error:.3f} " + " ".join(
            f"{n} {'in' if row[n]['covers'] else 'OUT'}" for n in covered), flush=True)  # type: ignore[index]
    return {"seeds": seeds, "first_seed": first_seed, "level": level, "campaigns": campaigns, "days": days,
            "logged_market": market.name, "simulator_level": simulator_level,
            "policy": str(checkpoint) if checkpoint is not None else "freshly seeded agent per seed",
            "truth_campaigns": truth_campaigns, "interval_clusters": "campaign",
            "intervals": ESTIMATOR_INTERVALS,
            "coverage": {name: count / seeds for name, count in covered.items()},
            "coverage_interval": {name: clopper_pearson(count, seeds) for name, count in covered.items()},
            "mean_interval_width": {name: width / seeds for name, width in widths.items()},
            "per_seed": per_seed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    historical = load_settings().orchestrator.phases.historical
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--level", type=int, default=3)
    parser.add_argument("--campaigns", type=int, default=historical.campaigns)
    parser.add_argument("--days", type=int, default=historical.days)
    parser.add_argument("--truth-campaigns", type=int, default=2048)
    parser.add_argument("--first-seed", type=int, default=0, help="runs seeds first_seed ...")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="a learner checkpoint: value this trained policy on every seed's logs")
    parser.add_argument("--sandbox", action="store_true",
                        help="logs from the platform sandbox's market, as phase 2 draws them")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.monotonic()
    result = coverage(args.seeds, args.level, args.campaigns, args.days, args.truth_campaigns,
                      args.first_seed, args.checkpoint, args.sandbox)
    result["wall_s"] = time.monotonic() - started
    print(json.dumps(result["coverage"]))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
