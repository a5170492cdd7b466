"""`gaelp approvals list | show ID | approve ID | reject ID --comment TEXT`: the money gates' approvals.

Deciding needs the operator's token (GAELP_OPERATOR_TOKEN); listing and showing do not.
"""

from __future__ import annotations

import argparse
import json

from gaelp.cli import targets
from gaelp.client.jsonview import message_json
from gaelp.client.money import ApprovalsClient
from gaelp.v1 import common_pb2, safety_pb2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    approvals = subparsers.add_parser("approvals", help="approve or reject the money gates' requests")
    verbs = approvals.add_subparsers(dest="approvals_command", required=True)
    listing = verbs.add_parser("list", help="pending approvals, oldest first")
    listing.set_defaults(func=list_pending)
    show = verbs.add_parser("show", help="one pending approval in full")
    show.add_argument("approval_id")
    show.set_defaults(func=show_one)
    approve = verbs.add_parser("approve", help="approve a pending request (needs the operator token)")
    approve.add_argument("approval_id")
    approve.add_argument("--comment", default="")
    approve.set_defaults(func=decide, approve=True)
    reject = verbs.add_parser("reject", help="reject a pending request (needs the operator token)")
    reject.add_argument("approval_id")
    reject.add_argument("--comment", required=True, help="why: the audit log keeps it")
    reject.set_defaults(func=decide, approve=False)
    for verb in (listing, show, approve, reject):
        targets.add_grpc_flags(verb, "--safety-policy", "safety policy")


def client(args: argparse.Namespace) -> ApprovalsClient:
    config = targets.settings()
    return ApprovalsClient(targets.safety_policy_target(args, config), targets.deadline(args, config),
                           config.operator.token.get_secret_value())


def approval_dict(approval: safety_pb2.ApprovalRequest) -> dict[str, object]:
    data = message_json(approval)
    data["phase"] = common_pb2.Phase.Name(approval.phase)
    return data


def approval_line(approval: safety_pb2.ApprovalRequest) -> str:
    amount = f" +{approval.amount:.2f}/day" if approval.amount else ""
    by = f" by {approval.decided_by}" if approval.decided_by else ""
    at = approval.requested_at.ToDatetime().strftime("%Y-%m-%d %H:%M:%S")
    return (f"{approval.approval_id}  {approval.kind:<17} {approval.status:<8}{by}  campaign "
            f"{approval.campaign_id or '-'}  run {approval.run_id or '-'}{amount}  asked {at} UTC")


@targets.one_line_errors
def list_pending(args: argparse.Namespace) -> int:
    with client(args) as approvals:
        pending = approvals.pending()
    if args.json:
        print(json.dumps([approval_dict(a) for a in pending]))
    elif not pending:
        print("no pending approvals")
    for approval in [] if args.json else pending:
        print(approval_line(approval))
    return 0


@targets.one_line_errors
def show_one(args: argparse.Namespace) -> int:
    with client(args) as approvals:
        approval = approvals.show(args.approval_id)
    if args.json:
        print(json.dumps(approval_dict(approval)))
    else:
        print(approval_line(approval))
        print(f"  justification: {approval.justification}")
    return 0


@targets.one_line_errors
def decide(args: argparse.Namespace) -> int:
    with client(args) as approvals:
        decided = approvals.decide(args.approval_id, args.approve, args.comment)
    if args.json:
        print(json.dumps(approval_dict(decided)))
    else:
        print(approval_line(decided))
    return 0
