"""The MCP connector drives the sandbox server process through a campaign lifecycle."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from gaelp.sim.platform.connector import CampaignSpec, PlatformError, TransientPlatformError
from gaelp.sim.platform.factory import make_platform_connector
from gaelp.sim.platform.mcp_client import McpConnectorConfig, McpPlatformConnector
from gaelp.sim.platform.sandbox_market import SandboxConfig, SandboxPlatform


def _connector(url: str, **overrides: object) -> McpPlatformConnector:
    return make_platform_connector({"url": url, "backoff_s": 0.05, "call_timeout_s": 10, **overrides})


async def test_campaign_lifecycle_over_mcp(sandbox_url: str) -> None:
    async with _connector(sandbox_url) as platform:
        assert (await platform.health())["platform"] == "sandbox"
        spec = CampaignSpec(
            name="shoes", product="running_shoes", daily_budget=25.0, bid=1.5, audience="young_adults"
        )
        campaign = await platform.create_campaign(spec, request_id="lifecycle-1")
        again = await platform.create_campaign(spec, request_id="lifecycle-1")
        assert again.campaign_id == campaign.campaign_id and campaign.status == "active"
        cid = campaign.campaign_id
        assert (await platform.update_bid(cid, 2.0, "cpc")).bid == 2.0
        assert (await platform.update_budget(cid, 30.0)).daily_budget == 30.0
        assert (await platform.update_creative(cid, "video")).creative == "video"
        updated = await platform.update_audience(cid, "professionals", 0.4)
        assert (updated.audience, updated.audience_size) == ("professionals", 0.4)
        await platform.call("sandbox_advance_time", {"hours": 10})
        report = await platform.fetch_report(cid)
        assert report.reported_through_hour == 7  # three hours of reporting delay
        assert report.impressions > 0 and report.spend > 0 and len(report.hourly_spend) == 7
        assert (await platform.pause(cid)).status == "paused"
        await platform.call("sandbox_advance_time", {"hours": 6})
        paused_report = await platform.fetch_report(cid)
        assert paused_report.hourly_spend[10:] == [0.0] * (len(paused_report.hourly_spend) - 10)
        assert (await platform.resume(cid)).status == "active"
        spend = await platform.account_spend()
        assert spend.by_campaign[cid] >= paused_report.spend
        assert spend.total_spend <= 2 * 30.0 + 1e-9  # still the first day: at most 2x the budget


async def test_transient_error_is_retried(sandbox_url: str) -> None:
    async with _connector(sandbox_url, max_attempts=4) as platform:
        campaign = await platform.create_campaign(
            CampaignSpec(name="retry", product="meal_kit", daily_budget=20.0, bid=1.0), request_id="retry-1"
        )
        await platform.call("sandbox_fail_next", {"calls": 2})
        before = platform.attempts_made
        paused = await platform.pause(campaign.campaign_id)
        assert paused.status == "paused"
        assert platform.attempts_made - before == 3  # two transient failures, then success


async def test_transient_errors_beyond_retries_surface_as_transient(sandbox_url: str) -> None:
    async with _connector(sandbox_url, max_attempts=2) as platform:
        await platform.call("sandbox_fail_next", {"calls": 5})
        with pytest.raises(TransientPlatformError, match="temporarily unavailable"):
            await platform.account_spend()
        await platform.call("sandbox_fail_next", {"calls": 0})


async def test_hard_error_surfaces_clearly_without_retry(sandbox_url: str) -> None:
    async with _connector(sandbox_url, max_attempts=4) as platform:
        before = platform.attempts_made
        with pytest.raises(PlatformError) as raised:
            await platform.update_bid("sandbox-does-not-exist", 1.0)
        assert not isinstance(raised.value, TransientPlatformError)
        assert raised.value.code == "not_found" and "sandbox-does-not-exist" in str(raised.value)
        assert platform.attempts_made - before == 1
        with pytest.raises(PlatformError, match="unknown audience"):
            await platform.create_campaign(
                CampaignSpec(name="bad", product="meal_kit", daily_budget=20.0, bid=1.0, audience="martians"),
                request_id="bad-1",
            )


async def test_unreachable_platform_is_a_transient_error() -> None:
    config = McpConnectorConfig(
        url="http://127.0.0.1:9/mcp", max_attempts=2, backoff_s=0.01, connect_timeout_s=2
    )
    with pytest.raises(TransientPlatformError):
        await McpPlatformConnector(config).health()


def test_sandbox_budget_follows_platform_semantics() -> None:
    """One day may spend up to 2x the daily budget, a month at most 30.4x, paused days spend nothing."""
    platform = SandboxPlatform(SandboxConfig(transient_error_rate=0.0, seed=3))
    budget = 20.0
    eager = platform.create_campaign(
        CampaignSpec(
            name="eager", product="travel_insurance", daily_budget=budget, bid=20.0, bid_strategy="cpm"
        ),
        request_id="eager",
    )
    platform.advance(24)
    platform.pause(eager.campaign_id)
    platform.advance(48)
    platform.resume(eager.campaign_id)
    platform.advance(24 * 33)
    hourly = np.array(platform.fetch_report(eager.campaign_id).hourly_spend)
    daily = hourly[: len(hourly) // 24 * 24].reshape(-1, 24).sum(axis=1)
    assert daily.max() <= 2 * budget + 1e-6
    assert daily[1:3].sum() == 0.0
    assert daily.max() > budget * 1.5  # paused days are caught up later in the month
    assert daily[:30].sum() <= 30.4 * budget + 1e-6


async def test_connector_speaks_to_a_stdio_server_process() -> None:
    command = [
        sys.executable,
        "-m",
        "gaelp.sim.platform.sandbox",
        "--transport",
        "stdio",
        "--transient-error-rate",
        "0",
    ]
    async with make_platform_connector({"command": command, "connect_timeout_s": 30}) as platform:
        assert (await platform.health())["status"] == "ok"
        campaign = await platform.create_campaign(
            CampaignSpec(name="stdio", product="video_game", daily_budget=15.0, bid=0.8), request_id="stdio-1"
        )
        assert campaign.campaign_id.startswith("sandbox-")


async def test_spend_log_and_call_log(sandbox_url: str) -> None:
    """The sandbox's own records: spend per campaign and platform day, and every operation received."""
    async with _connector(sandbox_url) as platform:
        first = (await platform.call("sandbox_call_log", {}))["total"]
        campaign = await platform.create_campaign(
            CampaignSpec(name="log", product="meal_kit", daily_budget=12.0, bid=2.0), request_id="log-1"
        )
        start = (await platform.health())["hour"]
        await platform.call("sandbox_advance_time", {"hours": 30})
        await platform.update_budget(campaign.campaign_id, 14.0)
        calls = (await platform.call("sandbox_call_log", {"since": first}))["calls"]
        assert [c["operation"] for c in calls] == ["create_campaign", "update_budget"]
        assert calls[1]["campaign_id"] == campaign.campaign_id
        assert calls[1]["arguments"] == {"daily_budget": 14.0}
        days = (await platform.call("sandbox_spend_log", {}))["campaigns"][campaign.campaign_id]
        spend = (await platform.account_spend()).by_campaign[campaign.campaign_id]
        assert sum(days.values()) == pytest.approx(spend)
        assert set(days) == {str(d) for d in range(start // 24, (start + 30 - 1) // 24 + 1)}
        assert all(day <= 2 * 12.0 + 1e-6 for day in days.values())
