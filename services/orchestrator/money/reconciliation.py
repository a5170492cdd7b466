"""Reconciliation at the end of a run: the platform's own spend log against the ledger's commits.

Per platform campaign and platform day, the platform's spend (the sandbox's spend log, kept by the
platform itself) is compared with the commits the ledger confirmed for the run's windows of that
day. unreserved_cents is the spend no commit covers (it must be 0); difference_cents also counts
commits above what the platform spent.
"""

from __future__ import annotations

from gaelp.sim.platform.mcp_client import McpPlatformConnector
from orchestrator.money.records import MoneyRunDocument, Reconciliation


async def reconcile(platform: McpPlatformConnector, money: MoneyRunDocument) -> Reconciliation:
    log = await platform.call("sandbox_spend_log", {})
    by_campaign: dict[str, dict[str, float]] = log["campaigns"]
    rows: list[dict[str, object]] = []
    unreserved = difference = 0
    platform_total = committed_total = 0.0
    for record in money.campaigns:
        if not record.campaign_id:
            continue
        committed_by_day: dict[int, float] = {}
        for window in record.windows:
            committed_by_day[window.day] = committed_by_day.get(window.day, 0.0) + (window.committed or 0.0)
        platform_days = {int(day): spend for day, spend in by_campaign.get(record.campaign_id, {}).items()}
        for day in sorted(set(platform_days) | set(committed_by_day)):
            spent, committed = platform_days.get(day, 0.0), committed_by_day.get(day, 0.0)
            gap_cents = round((spent - committed) * 100)
            unreserved += max(gap_cents, 0)
            difference += abs(gap_cents)
            platform_total += spent
            committed_total += committed
            rows.append({"campaign_id": record.campaign_id, "ledger_campaign": record.ledger_campaign,
                         "day": day, "platform_spend": round(spent, 6), "committed": round(committed, 6),
                         "difference_cents": gap_cents})
    return Reconciliation(platform_spend=round(platform_total, 6), committed=round(committed_total, 6),
                          unreserved_cents=unreserved, difference_cents=difference, by_campaign_day=rows,
                          source="sandbox_spend_log")
