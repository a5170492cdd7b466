"""What a trained policy loses by seeing only what a live campaign's observation holds.

The money phases feed the policy the platform's reports and what the advertiser knows
(orchestrator.money.policy_io: the rows in LIVE_ROWS; market context, per-persona mix and hourly
delivery stay 0). This scores the policy's deterministic actions on the sandbox market's simulator
(the market the sandbox platform serves, its daily budget capped at phase 3's maximum) on the same
seeded campaign-days twice: with the simulator's full observation and with every row outside
LIVE_ROWS set to 0. It prints the mean episode reward, the aggregate ROAS and the success rate of
each, per seed. The policy is a learner checkpoint (services/learner/checkpoints.py).

    OPENBLAS_NUM_THREADS=1 python -m benchmarks.platform_observation CHECKPOINT --seeds 7 11 --out FILE.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.phase2_calibration import load_agent
from gaelp.config import load_settings
from gaelp.sim.market.policies import PolicyEvaluation, evaluate_policy
from gaelp.sim.platform.sandbox_market import sandbox_market_config
from orchestrator.evaluation import deterministic_policy
from orchestrator.money.policy_io import LIVE_ROWS


def seeing_only(agent: Any, rows: np.ndarray) -> Any:
    """The agent's deterministic policy, seeing only `rows` of each observation."""

    def factory(env: Any) -> Any:
        act = deterministic_policy(agent)(env)

        def masked(obs: np.ndarray, info: dict[str, Any]) -> Any:
            seen = np.zeros_like(obs)
            seen[:, rows] = obs[:, rows]
            return act(seen, info)

        return masked

    return factory


def figures(result: PolicyEvaluation) -> dict[str, float]:
    return {"mean_reward": round(result.mean_reward, 3), "aggregate_roas": round(result.aggregate_roas, 3),
            "success_rate": round(result.success_rate, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 11, 13])
    parser.add_argument("--envs", type=int, default=64, help="campaign-days per seed")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.monotonic()
    agent = load_agent(args.checkpoint)
    budget_max = load_settings().orchestrator.money.daily_budget_max
    market = sandbox_market_config().model_copy(update={"max_daily_budget": budget_max})
    live = np.array(LIVE_ROWS)
    per_seed = []
    for seed in args.seeds:
        full = figures(evaluate_policy(deterministic_policy(agent), market, num_envs=args.envs, seed=seed))
        seen = figures(evaluate_policy(seeing_only(agent, live), market, num_envs=args.envs, seed=seed))
        per_seed.append({"seed": seed, "full_observation": full, "live_rows_only": seen})
        print(f"seed {seed}: full {full} | live rows only {seen}", flush=True)
    result = {"checkpoint": str(args.checkpoint), "market": market.name, "max_daily_budget": budget_max,
              "envs": args.envs, "live_rows": len(LIVE_ROWS), "per_seed": per_seed,
              "wall_s": round(time.monotonic() - started, 1)}
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
