"""`gaelp config init --preset NAME --out FILE` and `gaelp config validate FILE`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gaelp.config.settings import GaelpSettings, read_yaml

PRESETS_DIR = Path(__file__).resolve().parents[3] / "configs"
PRESETS = ("development", "production", "debug", "cpu", "gpu")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    config = subparsers.add_parser("config", help="create and validate configuration files")
    commands = config.add_subparsers(dest="config_command", required=True)
    init = commands.add_parser("init", help="write a complete config file from a preset")
    init.add_argument("--preset", choices=PRESETS, default="development")
    init.add_argument("--out", type=Path, required=True)
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.set_defaults(func=init_config)
    validate = commands.add_parser("validate", help="check a config file; print each error with its path")
    validate.add_argument("file", type=Path)
    validate.set_defaults(func=validate_config)


def preset_settings(name: str) -> GaelpSettings:
    """The preset merged over the defaults, without environment overrides (a file to edit)."""
    return GaelpSettings.model_validate(read_yaml(PRESETS_DIR / f"{name}.yaml"))


def init_config(args: argparse.Namespace) -> int:
    out: Path = args.out
    if out.exists() and not args.force:
        print(f"error: {out} exists (use --force to overwrite)", file=sys.stderr)
        return 1
    settings = preset_settings(args.preset)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False))
    print(f"wrote {out} from preset {args.preset}")
    return 0


def validation_errors(data: dict[str, Any]) -> list[str]:
    try:
        GaelpSettings.model_validate(data)
    except ValidationError as error:
        return [
            f"{'.'.join(str(part) for part in item['loc']) or '<root>'}: {item['msg']}"
            for item in error.errors()
        ]
    return []


def validate_config(args: argparse.Namespace) -> int:
    path: Path = args.file
    try:
        data = read_yaml(path)
    except (OSError, yaml.YAMLError, ValueError) as error:
        print(f"{path}: cannot read: {error}", file=sys.stderr)
        return 2
    errors = validation_errors(data)
    for line in errors:
        print(f"{path}: {line}", file=sys.stderr)
    if errors:
        return 1
    print(f"{path}: valid")
    return 0
