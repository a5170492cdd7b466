"""The money phases in the embedded run: the sandbox process, the demo operator, the report's money keys.

The embedded run starts the platform sandbox as its own process and a demo operator whose token is
created for that run alone (its SHA-256 goes into the safety policy's operators; the token never
leaves this process). The demo operator approves the run's money-gate requests as they come and
says so; the report gains `reconciliation`, `approvals`, `violations`, `campaigns` (from the
orchestrator's MoneyControl API) and `emergency_stop_latency_s` (from the stop drill, when run).

Ledger limits: the sandbox's clock packs many platform days into one real day, while the ledger's
daily limits count real days (in the account's zone, all phases together). One campaign day may
spend up to 2x its budget under the platform's rules, so the demo's limits hold, within one real
day, the platform days of phase 3's `campaigns` and of phase 4's `scaled_campaigns` at the highest
budget a step-up may reach (scaled_budget_max). Phase 4's approved budget steps raise the ledger's
daily limit by their amounts on top of that: the phase-4 ceiling leaves room for every step a
campaign can take (from daily_budget_min to scaled_budget_max), and the largest single step is
allowed, so an approval the operator gives always takes effect.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gaelp.client.errors import ClientError
from gaelp.client.money import ApprovalsClient, MoneyControlClient
from gaelp.config import GaelpSettings
from gaelp.service.auth import token_hash
from gaelp.sim.platform.process import SandboxProcess

DEMO_OPERATOR = "demo-operator"
DEMO_LEDGER_CAMPAIGN = "demo-sandbox-1"


@dataclass
class MoneyStack:
    """The sandbox and the demo operator of one embedded run."""

    settings: GaelpSettings
    sandbox: SandboxProcess
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    @classmethod
    def start(cls, settings: GaelpSettings, log_dir: Path, seed: int) -> MoneyStack:
        return cls(settings, SandboxProcess(log_dir, seed=seed).start())

    def safety_env(self) -> dict[str, str]:
        money = self.settings.orchestrator.money
        overdelivery = money.rules.overdelivery_factor
        # A campaign starts at a window, not at a platform day, so it touches one platform day more
        # than it runs, each with a cap of its own. The ledger counts open reservations against its
        # limits, and reports lag (the sandbox's by 3 h): when a window reserves, the one before it
        # is still open, so the two open windows of a day hold at most one day's cap more than the
        # day can spend, plus a cent each for rounding up to the cent.
        days_touched = money.campaign_days + 1
        platform_days = money.campaigns * days_touched
        most_per_day = overdelivery * money.daily_budget_max
        overlap = most_per_day + 0.02
        phase_3_total = most_per_day * platform_days + overlap
        # Phase 4: every campaign at the highest level a step-up may reach, on every day it touches.
        scaled_per_day = overdelivery * money.scaled_budget_max
        scaled_episode = scaled_per_day * days_touched + scaled_per_day + 0.02
        scaled_total = money.scaled_campaigns * scaled_episode
        # A campaign's steps ask, in all, for what its day may spend above its first level.
        steps_total = (money.scaled_campaigns * overdelivery
                       * (money.scaled_budget_max - money.daily_budget_min))
        largest_step = overdelivery * money.scaled_budget_max * (1 - 1 / money.budget_step_factor) + 0.01
        safety = self.settings.safety_policy
        # The ledger's maximum bid stays the settings' (by default the top of the policy's bid range).
        real_testing = safety.real_testing.model_copy(update={
            "daily_limit_max": max(phase_3_total, safety.real_testing.daily_limit_max),
            "episode_limit": most_per_day * days_touched + overlap,
            "phase_total": phase_3_total,
        })
        scaled = safety.scaled.model_copy(update={
            "daily_limit_max": max(phase_3_total + scaled_total, safety.scaled.daily_limit_max),
            "episode_limit": scaled_episode,
            "phase_total": scaled_total,
        })
        operators = {**safety.operators, DEMO_OPERATOR: token_hash(self.token)}
        campaigns = [{"campaign_id": DEMO_LEDGER_CAMPAIGN, "time_zone": "UTC",
                      "daily_limit": phase_3_total + scaled_total}]
        return {"GAELP_SAFETY_POLICY_OPERATORS": json.dumps(operators),
                "GAELP_SAFETY_POLICY_CAMPAIGNS": json.dumps(campaigns),
                "GAELP_SAFETY_POLICY_REAL_TESTING": real_testing.model_dump_json(),
                "GAELP_SAFETY_POLICY_SCALED": scaled.model_dump_json(),
                "GAELP_SAFETY_POLICY_SCALED_DAILY_CEILING": json.dumps(
                    max(phase_3_total + scaled_total + steps_total, safety.scaled_daily_ceiling)),
                "GAELP_SAFETY_POLICY_MAX_BUDGET_STEP": json.dumps(
                    round(max(largest_step, safety.max_budget_step), 2))}

    def orchestrator_env(self, safety_target: str) -> dict[str, str]:
        money = self.settings.orchestrator.money
        money = money.model_copy(update={
            "safety_policy_target": safety_target, "ledger_campaigns": [DEMO_LEDGER_CAMPAIGN],
            "platform": money.platform.model_copy(update={"url": self.sandbox.url}),
        })
        return {"GAELP_ORCHESTRATOR_MONEY": money.model_dump_json()}

    def stop(self) -> None:
        self.sandbox.stop()


class DemoApprover:
    """Approves the run's pending requests as the demo operator, in a thread, and prints each."""

    def __init__(self, safety_target: str, token: str, run_id: str, say: Callable[[str], None],
                 poll_s: float = 1.0) -> None:
        self.safety_target = safety_target
        self.token = token
        self.run_id = run_id
        self.say = say
        self.poll_s = poll_s
        self.approved: list[dict[str, object]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="demo-approver", daemon=True)

    def __enter__(self) -> DemoApprover:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        with ApprovalsClient(self.safety_target, 10.0, self.token) as approvals:
            while not self._stop.wait(self.poll_s):
                try:
                    pending = [a for a in approvals.pending() if a.run_id == self.run_id]
                    for approval in pending:
                        decided = approvals.decide(approval.approval_id, True, "approved by the demo")
                        at = decided.decided_at.ToJsonString()
                        self.approved.append({"approval_id": decided.approval_id, "kind": decided.kind,
                                              "campaign_id": decided.campaign_id, "by": decided.decided_by,
                                              "at": at, "amount": decided.amount})
                        step = (f" (+{decided.amount:.2f}/day on the ledger: {decided.justification})"
                                if decided.kind == "budget_increase" else "")
                        self.say(f"  approved {decided.kind} for {decided.campaign_id} as the demo operator "
                                 f"'{decided.decided_by}' at {at} (approval {decided.approval_id}){step}")
                except ClientError as error:
                    self.say(f"  demo approver: {error}")


def money_document(orchestrator_target: str, run_id: str) -> dict[str, Any]:
    """The orchestrator's money records of the run (GetMoneyReport); empty when it has none."""
    try:
        with MoneyControlClient(orchestrator_target) as money:
            return money.report(run_id)
    except ClientError:
        return {}


def money_report(document: dict[str, Any], approved: list[dict[str, object]],
                 say: Callable[[str], None], stop_latency_s: float | None = None) -> dict[str, Any]:
    """The report's money keys from the run's money document (printed too); empty figures when the
    run reached no money phase."""
    campaigns = [{
        "index": c["index"], "phase": c["phase"], "attempt": c.get("attempt", 1),
        "campaign_id": c["campaign_id"], "product": c["product"],
        "transfer": c["transfer"], "status": c["status"], "ledger_campaign": c["ledger_campaign"],
        "spend": c["spend"], "revenue": c["revenue"], "budget": c["budget"],
        "reserved": sum(w["amount"] for w in c["windows"] if w["granted"]),
        "committed": sum(w["committed"] or 0.0 for w in c["windows"]),
        "limits": {"daily_budget_max": max((w["daily_budget"] for w in c["windows"]), default=0.0),
                   "most_per_window": max((w["amount"] for w in c["windows"]), default=0.0)},
    } for c in document.get("campaigns", [])]
    by_id = {a["approval_id"]: a for a in approved}
    approvals = [{"kind": a["kind"], "campaign_id": a["campaign_id"], "subject": a["subject"],
                  "amount": a["amount"], "status": a["status"],
                  "by": by_id.get(a["approval_id"], {}).get("by", ""),
                  "at": by_id.get(a["approval_id"], {}).get("at", "")} for a in document.get("approvals", [])]
    reconciliation = document.get("reconciliation") or {"platform_spend": 0.0, "committed": 0.0,
                                                         "unreserved_cents": 0, "difference_cents": 0}
    figures = ("platform_spend", "committed", "unreserved_cents", "difference_cents")
    transfer = document.get("transfer")
    if campaigns:
        say(f"  money phases: {len(campaigns)} sandbox campaign(s); reconciliation: sandbox spend "
            f"{reconciliation['platform_spend']:.2f} vs ledger commits {reconciliation['committed']:.2f}, "
            f"{reconciliation['unreserved_cents']} cents unreserved, "
            f"{reconciliation['difference_cents']} cents apart; "
            f"{len(document.get('violations', []))} violation(s)")
        say("    (p3a1: phase 3, the run's first entry into it; T: a transfer campaign, a held-out product"
            " with the fine-tuned policy; max budget per day, max window reservation)")
        for c in campaigns:
            say(f"    p{c['phase']}a{c['attempt']} {c['campaign_id'] or '(never live)':<12} "
                f"{c['product']:<16} "
                f"{'T' if c['transfer'] else ' '} {c['status']:<8} spend {c['spend']:7.2f} reserved "
                f"{c['reserved']:7.2f} committed {c['committed']:7.2f} revenue {c['revenue']:7.2f} max "
                f"{c['limits']['daily_budget_max']:6.2f}/day {c['limits']['most_per_window']:6.2f}/window")
        for a in approvals:
            say(f"    approval {a['kind']:<16} {a['subject'] or a['campaign_id']:<20} {a['status']:<9}"
                + (f" +{a['amount']:.2f}/day" if a["kind"] == "budget_increase" else "")
                + (f" by {a['by']}" if a["by"] else ""))
    if transfer:
        say(f"  phase-4 transfer to {', '.join(transfer['products'])} (never sold in phase 1), "
            f"{transfer['env_steps']} simulator env steps each on {transfer['market']}, normalized reward: "
            f"phase-3 policy {transfer['zero_shot_score']:.3f} -> fine-tuned "
            f"{transfer['fine_tuned_score']:.3f}; "
            f"from scratch {transfer['scratch_score']:.3f}; in {transfer['seconds']:.0f} s")
    return {"reconciliation": {k: reconciliation.get(k, 0) for k in figures},
            "approvals": approvals, "violations": document.get("violations", []), "campaigns": campaigns,
            "transfer": transfer,
            # Measured by the demo's stop drill (--stop-drill; gaelp.embedded.stop_drill), else None.
            "emergency_stop_latency_s": stop_latency_s}
