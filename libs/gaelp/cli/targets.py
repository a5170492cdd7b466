"""Where the CLI finds the services: flags over the typed settings (GAELP_CONFIG, GAELP_* variables)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import wraps

from gaelp.client.errors import ClientError
from gaelp.config import GaelpSettings, load_settings
from gaelp.v1 import common_pb2

# --phase values: the Phase enum's names without their prefix (simulation, historical, ...).
PHASES: dict[str, int] = {
    name.removeprefix("PHASE_").lower(): number
    for name, number in common_pb2.Phase.items() if number != common_pb2.PHASE_UNSPECIFIED
}


def settings() -> GaelpSettings:
    return load_settings()


def add_grpc_flags(parser: argparse.ArgumentParser, flag: str, service_help: str) -> None:
    parser.add_argument(flag, default="", help=f"host:port of the {service_help} (default from settings)")
    parser.add_argument("--deadline", type=float, default=0.0,
                        help="seconds each call may take (default: grpc.deadline_s)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def orchestrator_target(args: argparse.Namespace, config: GaelpSettings) -> str:
    return args.orchestrator or f"{config.grpc.host}:{config.orchestrator.grpc_port}"


def safety_policy_target(args: argparse.Namespace, config: GaelpSettings) -> str:
    return args.safety_policy or f"{config.grpc.host}:{config.safety_policy.grpc_port}"


def deadline(args: argparse.Namespace, config: GaelpSettings) -> float:
    return float(args.deadline) if args.deadline > 0 else config.grpc.deadline_s


def bootstrap(args: argparse.Namespace, config: GaelpSettings) -> str:
    value = args.bootstrap or config.kafka.bootstrap
    if not value:
        raise ClientError("no broker: pass --bootstrap host:port or set GAELP_KAFKA_BOOTSTRAP")
    return value


def one_line_errors(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A verb's ClientError becomes one line on stderr and exit code 1; Ctrl-C exits 130."""
    import sys

    @wraps(func)
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except ClientError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130

    return wrapper
