"""`gaelp historical benchmark --campaign {all,men,women} [--json]`: OPE on the Open Bandit Dataset.

Estimates the Bernoulli-TS policy's click rate from the random policy's logs only and compares
each estimator with the bts logs' on-policy click rate. Fetches the data first if needed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gaelp.config.settings import load_settings
from gaelp.sim.historical.benchmark import run_obd_benchmark
from gaelp.sim.historical.obd import OBD_CAMPAIGNS, ObdFetchError, fetch_obd


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    historical = subparsers.add_parser("historical", help="logged data and off-policy evaluation")
    commands = historical.add_subparsers(dest="historical_command", required=True)
    bench = commands.add_parser("benchmark", help="IPW/SNIPW/DM/DR on OBD: value bts from random logs")
    bench.add_argument("--campaign", choices=OBD_CAMPAIGNS, default="all")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples per interval")
    bench.add_argument("--refit-bootstrap", type=int, default=100, help="DM/DR resamples with model refit")
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--cache-dir", type=Path, help="default: settings storage.cache_dir")
    bench.set_defaults(func=benchmark)


def benchmark(args: argparse.Namespace) -> int:
    cache_dir = args.cache_dir if args.cache_dir is not None else Path(load_settings().storage.cache_dir)
    try:
        root = fetch_obd(cache_dir)
    except ObdFetchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    result = run_obd_benchmark(
        root,
        args.campaign,
        n_bootstrap=args.bootstrap,
        seed=args.seed,
        n_refit_bootstrap=args.refit_bootstrap,
    )
    if args.json:
        print(json.dumps(result.as_dict()))
        return 0
    print(f"campaign {args.campaign}: bts on-policy click rate (truth) {result.truth:.5f}")
    print(f"{'estimator':<10}{'estimate':>10}{'95% CI':>22}{'rel. error':>12}")
    for name, estimate in result.estimates.items():
        interval = f"[{estimate.ci_low:.5f}, {estimate.ci_high:.5f}]"
        print(
            f"{name:<10}{estimate.estimate:>10.5f}{interval:>22}{estimate.relative_error(result.truth):>12.1%}"
        )
    return 0
