"""How often each off-policy estimator's 95% interval covers the true value of an agent's policy.

The sandbox market knows its own truth: logs are generated from one market (the logging policy
picks creative x audience uniformly, so propensities are known), and the true value of the policy
is what it earns when it runs in that same market (clicks per campaign-hour, the simulator's
on-policy figure). Over N seeds (fresh logs, a freshly seeded agent policy each time) the benchmark
counts, per estimator (IPS, SNIPS, DM, DR), the seeds whose interval contains that truth.
The truth is itself a Monte Carlo mean over 256 campaigns x 2 days, so a small share of misses can
come from its own noise.

    python -m benchmarks.ope_coverage --seeds 20 --out FILE.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from gaelp.config import load_settings
from gaelp.rl.factory import make_agent
from gaelp.sim.market.config import curriculum_level
from gaelp.sim.market.env import AdMarketVectorEnv
from orchestrator.phase2 import AGENT, historical_figures


def coverage(seeds: int, level: int, campaigns: int, days: int) -> dict[str, object]:
    settings = load_settings()
    env = AdMarketVectorEnv(num_envs=1, level=level, seed=0)
    covered = {"ipw": 0, "snipw": 0, "dm": 0, "dr": 0}
    per_seed = []
    for seed in range(seeds):
        torch.manual_seed(seed)
        agent = make_agent(settings.training.algorithm, env.single_observation_space, env.single_action_space,
                           settings.training.algorithm_config(), device="cpu", seed=seed)
        figures = historical_figures(agent, level, campaigns, days, seed, 0.15,
                                     logged_market=curriculum_level(level))
        truth = figures.predicted[AGENT]
        row: dict[str, object] = {"seed": seed, "truth": truth}
        for name, estimate in figures.estimates[AGENT].items():
            inside = estimate.ci_low <= truth <= estimate.ci_high
            covered[name] += inside
            row[name] = {"estimate": estimate.estimate, "ci_low": estimate.ci_low,
                         "ci_high": estimate.ci_high, "covers": inside}
        per_seed.append(row)
        print(f"seed {seed}: truth {truth:.3f} " + " ".join(
            f"{n} {'in' if row[n]['covers'] else 'OUT'}" for n in covered), flush=True)  # type: ignore[index]
    return {"seeds": seeds, "level": level, "campaigns": campaigns, "days": days,
            "coverage": {name: count / seeds for name, count in covered.items()}, "per_seed": per_seed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--level", type=int, default=3)
    parser.add_argument("--campaigns", type=int, default=96)
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.monotonic()
    result = coverage(args.seeds, args.level, args.campaigns, args.days)
    result["wall_s"] = time.monotonic() - started
    print(json.dumps(result["coverage"]))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
