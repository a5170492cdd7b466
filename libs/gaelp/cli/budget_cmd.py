"""`gaelp budget status --campaign C [--phase N] [--day D]`: the safety policy's ledger view."""

from __future__ import annotations

import argparse
import json

from gaelp.cli import targets
from gaelp.client import SafetyPolicyClient
from gaelp.client.jsonview import message_json
from gaelp.v1 import common_pb2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    budget = subparsers.add_parser("budget", help="budgets and spend of campaigns")
    verbs = budget.add_subparsers(dest="budget_command", required=True)
    status = verbs.add_parser("status", help="limits, committed and reserved spend of a campaign")
    status.add_argument("--campaign", required=True)
    status.add_argument("--phase", choices=sorted(targets.PHASES), default="real_testing")
    status.add_argument("--day", default="", help="YYYY-MM-DD in the campaign's zone (default: today)")
    targets.add_grpc_flags(status, "--safety-policy", "safety policy")
    status.set_defaults(func=budget_status)


@targets.one_line_errors
def budget_status(args: argparse.Namespace) -> int:
    config = targets.settings()
    target = targets.safety_policy_target(args, config)
    with SafetyPolicyClient(target, targets.deadline(args, config)) as client:
        status = client.budget_status(args.campaign, targets.PHASES[args.phase], args.day)
    if args.json:
        data = message_json(status)
        data["phase"] = common_pb2.Phase.Name(status.phase)
        print(json.dumps(data))
        return 0
    stopped = "  EMERGENCY STOPPED" if status.emergency_stopped else ""
    print(f"campaign {status.campaign_id}  {common_pb2.Phase.Name(status.phase)}  day {status.day} "
          f"({status.time_zone}){stopped}")
    print(f"  today: committed {status.committed_today:.2f} + reserved {status.reserved_today:.2f} "
          f"of {status.daily_limit:.2f}")
    print(f"  phase: committed {status.committed_phase:.2f} + reserved {status.reserved_phase:.2f} "
          f"of {status.phase_limit:.2f}")
    print(f"  episode limit {status.episode_limit:.2f}, max bid {status.max_bid:.2f}, "
          f"phase entry approved: {status.phase_entry_approved}")
    return 0
