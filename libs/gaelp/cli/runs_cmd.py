"""`gaelp runs start | list | status | pause | resume`: the orchestrator's control API."""

from __future__ import annotations

import argparse
import json

from gaelp.cli import targets
from gaelp.client import OrchestratorClient
from gaelp.client.jsonview import message_json
from gaelp.v1 import common_pb2, orchestrator_pb2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    runs = subparsers.add_parser("runs", help="start, list, watch, pause and resume runs")
    verbs = runs.add_subparsers(dest="runs_command", required=True)
    start = verbs.add_parser("start", help="start a run")
    start.add_argument("--run", default="", help="run id (default: the orchestrator picks one)")
    start.add_argument("--kind", choices=("train", "smoke"), default="train")
    start.add_argument("--max-env-steps", type=int, default=0, help="step budget (0: the whole curriculum)")
    start.add_argument("--episodes", type=int, default=None,
                       help="smoke runs: play at least this many episodes (whole rounds of every actor's"
                       " environments)")
    start.add_argument("--wait", type=float, default=0.0, help="wait up to this many seconds for the end")
    start.set_defaults(func=start_run)
    listing = verbs.add_parser("list", help="the newest runs")
    listing.add_argument("--state", default="",
                         choices=("", "running", "paused", "awaiting_approval", "completed", "failed"))
    listing.add_argument("--limit", type=int, default=20)
    listing.set_defaults(func=list_runs)
    status = verbs.add_parser("status", help="a run's status")
    status.add_argument("run")
    status.add_argument("--history", action="store_true", help="also list the run's phase transitions")
    status.set_defaults(func=run_status)
    for name, func in (("pause", pause_run), ("resume", resume_run)):
        verb = verbs.add_parser(name, help=f"{name} a run")
        verb.add_argument("run")
        verb.set_defaults(func=func)
    for verb in (start, listing, status, *(verbs.choices[n] for n in ("pause", "resume"))):
        targets.add_grpc_flags(verb, "--orchestrator", "orchestrator")


def _client(args: argparse.Namespace) -> OrchestratorClient:
    config = targets.settings()
    return OrchestratorClient(targets.orchestrator_target(args, config), targets.deadline(args, config))


def status_dict(status: orchestrator_pb2.RunStatus) -> dict[str, object]:
    data = message_json(status)
    data["phase"] = common_pb2.Phase.Name(status.phase)
    return data


def status_line(status: orchestrator_pb2.RunStatus) -> str:
    phase = common_pb2.Phase.Name(status.phase).removeprefix("PHASE_").lower()
    budget = f"/{status.max_env_steps}" if status.max_env_steps else ""
    text = (f"{status.run_id:<28} {status.state:<9} {status.kind:<5} phase {phase:<11} "
            f"task {status.task or '-':<10} {status.episodes:>7} episodes "
            f"{status.env_steps:>9}{budget} steps "
            f"policy v{status.policy_version}")
    return text + (f"  ({status.detail})" if status.detail else "")


def _print(args: argparse.Namespace, status: orchestrator_pb2.RunStatus) -> None:
    print(json.dumps(status_dict(status)) if args.json else status_line(status))


@targets.one_line_errors
def start_run(args: argparse.Namespace) -> int:
    with _client(args) as client:
        status = client.start_run(args.run, kind=args.kind, max_env_steps=args.max_env_steps,
                                  episodes=args.episodes)
        if args.wait > 0:
            status = client.wait(status.run_id, timeout_s=args.wait)
    _print(args, status)
    return 0


@targets.one_line_errors
def list_runs(args: argparse.Namespace) -> int:
    with _client(args) as client:
        runs = client.list_runs(args.state, args.limit)
    if args.json:
        print(json.dumps([status_dict(status) for status in runs]))
    for status in runs if not args.json else ():
        print(status_line(status))
    return 0


@targets.one_line_errors
def run_status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        status = client.status(args.run)
    _print(args, status)
    if args.history and not args.json:
        for entry in status.phase_history:
            change = entry.transition
            print(f"  {entry.at.ToJsonString()}  {common_pb2.Phase.Name(change.from_phase)} -> "
                  f"{common_pb2.Phase.Name(change.to_phase)}  {change.reason}")
        if not status.phase_history:
            print("  no phase transitions yet")
    return 0


@targets.one_line_errors
def pause_run(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _print(args, client.pause(args.run))
    return 0


@targets.one_line_errors
def resume_run(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _print(args, client.resume(args.run))
    return 0
