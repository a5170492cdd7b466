"""Entry point of the `gaelp` command: each command group registers its own subparser."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Each module exposes register(subparsers) and sets `func` on its parsers; func(args) -> exit code.
COMMAND_MODULES: tuple[str, ...] = (
    "gaelp.cli.config_cmd",
    "gaelp.cli.data_cmd",
    "gaelp.cli.historical_cmd",
    "gaelp.cli.runs_cmd",
    "gaelp.cli.budget_cmd",
    "gaelp.cli.episodes_cmd",
    "gaelp.cli.traces_cmd",
    "gaelp.cli.approvals_cmd",
    "gaelp.cli.stop_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gaelp", description="GAELP command line")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
