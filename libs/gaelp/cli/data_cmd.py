"""`gaelp data fetch obd [--cache-dir DIR] [--force]`: download the Open Bandit Dataset sample."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gaelp.config.settings import load_settings
from gaelp.sim.historical.obd import ObdFetchError, fetch_obd

DATASETS = ("obd",)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    data = subparsers.add_parser("data", help="download datasets into the cache directory")
    commands = data.add_subparsers(dest="data_command", required=True)
    fetch = commands.add_parser("fetch", help="download and extract a dataset")
    fetch.add_argument("dataset", choices=DATASETS)
    fetch.add_argument("--cache-dir", type=Path, help="default: settings storage.cache_dir")
    fetch.add_argument("--force", action="store_true", help="download again even if cached")
    fetch.set_defaults(func=fetch_dataset)


def cache_dir_from(args: argparse.Namespace) -> Path:
    return args.cache_dir if args.cache_dir is not None else Path(load_settings().storage.cache_dir)


def fetch_dataset(args: argparse.Namespace) -> int:
    try:
        root = fetch_obd(cache_dir_from(args), force=args.force)
    except ObdFetchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    files = sorted(root.rglob("*.csv"))
    print(f"obd: {len(files)} files in {root}")
    return 0
