"""`gaelp stop --reason TEXT`: the emergency stop. `gaelp stop --resume --reason TEXT`: ask for the
approved resume that lifts it.

The stop first blocks every reservation at the safety policy (nothing new can be spent), then has
the orchestrator pause every money-phase campaign on the platform. Both need the operator token
(GAELP_OPERATOR_TOKEN). A resume is an approval request (kind resume_after_stop) an operator then
approves with `gaelp approvals approve ID`.
"""

from __future__ import annotations

import argparse
import json
import time

from gaelp.cli import targets
from gaelp.cli.approvals_cmd import approval_line, client
from gaelp.client.money import MoneyControlClient


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    stop = subparsers.add_parser("stop", help="emergency stop: block all spend, pause every money campaign")
    stop.add_argument("--reason", required=True, help="why (kept in the audit log)")
    stop.add_argument("--resume", action="store_true", help="instead: request the approved resume")
    stop.add_argument("--orchestrator", default="",
                      help="host:port of the orchestrator (default from settings)")
    targets.add_grpc_flags(stop, "--safety-policy", "safety policy")
    stop.set_defaults(func=stop_or_resume)


@targets.one_line_errors
def stop_or_resume(args: argparse.Namespace) -> int:
    if args.resume:
        with client(args) as approvals:
            asked = approvals.request_resume(args.reason)
        print(json.dumps({"approval_id": asked.approval_id}) if args.json else
              f"resume requested, approve it with: gaelp approvals approve {asked.approval_id}\n"
              f"{approval_line(asked)}")
        return 0
    config = targets.settings()
    started = time.monotonic()
    with client(args) as approvals:
        stopped = approvals.emergency_stop(args.reason)
    orchestrator = targets.orchestrator_target(args, config)
    with MoneyControlClient(orchestrator, targets.deadline(args, config)) as money:
        paused = money.pause_all(args.reason)
    latency = time.monotonic() - started
    if args.json:
        print(json.dumps({"stopped": stopped.stopped, "paused_campaign_ids": list(paused.paused_campaign_ids),
                          "latency_s": latency}))
    else:
        print(f"emergency stop in force: reservations blocked; {len(paused.paused_campaign_ids)} campaign(s) "
              f"paused in {latency:.3f} s: {', '.join(paused.paused_campaign_ids) or '-'}")
    return 0
