"""`gaelp historical ...`: logged campaign data and off-policy evaluation.

    benchmark --campaign {all,men,women} [--json]   OPE on the Open Bandit Dataset: estimates the
        Bernoulli-TS policy's click rate from the random policy's logs only and compares each
        estimator with the bts logs' on-policy click rate (fetches the data first if needed)
    check FILE [--level N]                           validates a log file of your own for phase 2
        (docs/historical_data.md) and says whether the simulator can be calibrated on it
    export-sandbox-logs FILE [--campaigns N --days D --seed S]
                                                     writes the platform sandbox's logs in that
        format: an example file, and what phase 2 scores a run on by default
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gaelp.config.settings import load_settings
from gaelp.sim.historical.ad_logs import generate_ad_logs
from gaelp.sim.historical.benchmark import run_obd_benchmark
from gaelp.sim.historical.calibration import calibration_blocker
from gaelp.sim.historical.obd import OBD_CAMPAIGNS, ObdFetchError, fetch_obd
from gaelp.sim.historical.user_logs import LogFileError, load_user_logs, write_user_logs
from gaelp.sim.market.env import AdMarketVectorEnv
from gaelp.sim.platform.sandbox_market import sandbox_market_config


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
    check = commands.add_parser("check", help="validate a log file of your own for phase 2")
    check.add_argument("file", type=Path)
    check.add_argument("--level", type=int,
                       help="simulator level whose audiences the file's must be (default: phase 2's)")
    check.set_defaults(func=check_file)
    export = commands.add_parser("export-sandbox-logs", help="write the sandbox market's logs as a log file")
    export.add_argument("file", type=Path)
    export.add_argument("--campaigns", type=int, help="default: phase 2's (settings)")
    export.add_argument("--days", type=int, help="default: phase 2's (settings)")
    export.add_argument("--seed", type=int, default=0)
    export.set_defaults(func=export_sandbox_logs)


def check_file(args: argparse.Namespace) -> int:
    historical = load_settings().orchestrator.phases.historical
    level = args.level if args.level is not None else historical.simulator_level
    num_audiences = AdMarketVectorEnv(num_envs=1, level=level, seed=0).core.world.num_audiences
    try:
        logs = load_user_logs(args.file, num_audiences)
    except (LogFileError, OSError) as error:
        print(f"error: {args.file}: {error}", file=sys.stderr)
        return 1
    campaigns = len(set(logs.campaign.tolist())) if logs.campaign is not None else logs.arm.shape[0]
    print(f"{args.file}: {logs.arm.shape[0]} rows, {campaigns} campaigns, {num_audiences} audiences: valid")
    blocker = calibration_blocker(logs)
    print("calibration: possible" if blocker is None
          else f"calibration: not possible ({blocker}); phase 2 would predict uncalibrated")
    return 0


def export_sandbox_logs(args: argparse.Namespace) -> int:
    historical = load_settings().orchestrator.phases.historical
    campaigns = args.campaigns if args.campaigns is not None else historical.campaigns
    days = args.days if args.days is not None else historical.days
    rows = write_user_logs(generate_ad_logs(sandbox_market_config(), campaigns, days, args.seed), args.file)
    print(f"{args.file}: {rows} rows of the platform sandbox's logs ({campaigns} campaigns, {days} days,"
          f" seed {args.seed})")
    return 0


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
