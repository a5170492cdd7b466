"""The platform sandbox server: SandboxPlatform's operations as MCP tools (streamable HTTP or stdio).

    python -m gaelp.sim.platform.sandbox [--transport streamable-http|stdio] [--host 127.0.0.1]
        [--port 8765] [--seed 0]
        [--transient-error-rate 0.02] [--report-delay-hours 3] [--seconds-per-hour 0]

MCP endpoint: http://HOST:PORT/mcp. Health: the `health` tool, and GET /healthz (HTTP 200 JSON).
Errors are tool errors whose text is JSON {"code", "retryable", "message"} so a client can tell a
transient failure from a refusal. Sandbox-only tools start with `sandbox_`: advancing the platform
clock (when --seconds-per-hour is 0 the clock moves only by that tool) and injecting failures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from starlette.requests import Request
from starlette.responses import JSONResponse

from gaelp.sim.platform.connector import CampaignSpec, PlatformError, TransientPlatformError
from gaelp.sim.platform.sandbox_market import SandboxConfig, SandboxPlatform

SERVER_NAME = "gaelp-platform-sandbox"
T = TypeVar("T")


def _run(call: Callable[[], T]) -> T:
    """Turn platform errors into MCP tool errors that carry a machine-readable code."""
    try:
        return call()
    except PlatformError as error:
        payload = {
            "code": error.code,
            "retryable": isinstance(error, TransientPlatformError),
            "message": error.detail,
        }
        raise ToolError(json.dumps(payload)) from error


def build_server(
    platform: SandboxPlatform, seconds_per_hour: float = 0.0, log_level: str = "WARNING"
) -> MCPServer:
    @asynccontextmanager
    async def clock(_: MCPServer) -> AsyncIterator[None]:
        task = None
        if seconds_per_hour > 0:

            async def tick() -> None:
                while True:
                    await asyncio.sleep(seconds_per_hour)
                    platform.advance(1)

            task = asyncio.create_task(tick())
        try:
            yield None
        finally:
            if task is not None:
                task.cancel()

    server = MCPServer(
        SERVER_NAME,
        instructions="GAELP ad-platform sandbox (simulated market)",
        lifespan=clock,
        log_level=log_level,  # type: ignore[arg-type]  # validated by argparse choices
    )

    @server.tool()
    def health() -> dict[str, Any]:
        """Liveness and the sandbox clock."""
        return platform.health()

    @server.tool()
    def create_campaign(
        name: str,
        product: str,
        daily_budget: float,
        bid: float,
        request_id: str,
        bid_strategy: str = "cpc",
        creative: str = "image",
        audience: str = "broad",
        audience_size: float = 0.5,
    ) -> dict[str, Any]:
        """Create an active campaign; retrying with the same request_id returns the same campaign."""
        spec = _run(
            lambda: CampaignSpec.model_validate(
                {
                    "name": name,
                    "product": product,
                    "daily_budget": daily_budget,
                    "bid": bid,
                    "bid_strategy": bid_strategy,
                    "creative": creative,
                    "audience": audience,
                    "audience_size": audience_size,
                }
            )
        )
        return _run(lambda: platform.create_campaign(spec, request_id)).model_dump()

    @server.tool()
    def update_bid(campaign_id: str, bid: float, bid_strategy: str | None = None) -> dict[str, Any]:
        return _run(lambda: platform.update_bid(campaign_id, bid, bid_strategy)).model_dump()

    @server.tool()
    def update_budget(campaign_id: str, daily_budget: float) -> dict[str, Any]:
        return _run(lambda: platform.update_budget(campaign_id, daily_budget)).model_dump()

    @server.tool()
    def update_creative(campaign_id: str, creative: str) -> dict[str, Any]:
        return _run(lambda: platform.update_creative(campaign_id, creative)).model_dump()

    @server.tool()
    def update_audience(campaign_id: str, audience: str, audience_size: float) -> dict[str, Any]:
        return _run(lambda: platform.update_audience(campaign_id, audience, audience_size)).model_dump()

    @server.tool()
    def pause_campaign(campaign_id: str) -> dict[str, Any]:
        return _run(lambda: platform.pause(campaign_id)).model_dump()

    @server.tool()
    def resume_campaign(campaign_id: str) -> dict[str, Any]:
        return _run(lambda: platform.resume(campaign_id)).model_dump()

    @server.tool()
    def get_report(campaign_id: str) -> dict[str, Any]:
        """Totals over the reported hours; the latest hours are not reported yet."""
        report = _run(lambda: platform.fetch_report(campaign_id)).model_dump()
        if platform.malformed_reports > 0:  # a drill: what a broken platform might answer
            platform.malformed_reports -= 1
            return {"campaign_id": campaign_id, "spend": "n/a", "hourly_spend": None}
        return report

    @server.tool()
    def get_account_spend() -> dict[str, Any]:
        return _run(platform.account_spend).model_dump()

    @server.tool()
    def sandbox_advance_time(hours: int) -> dict[str, Any]:
        """Sandbox only: simulate the next `hours` platform hours."""
        if not 0 < hours <= 24 * 62:
            raise ToolError(
                json.dumps({"code": "invalid_argument", "retryable": False, "message": "1..1488"})
            )
        return {"hour": platform.advance(hours)}

    @server.tool()
    def sandbox_spend_log() -> dict[str, Any]:
        """Sandbox only: the platform's spend per campaign and platform day (day = hour // 24)."""
        return {"hour": platform.hour,
                "campaigns": {cid: {str(day): spend for day, spend in days.items()}
                              for cid, days in platform.spend_log().items()}}

    @server.tool()
    def sandbox_call_log(since: int = 0) -> dict[str, Any]:
        """Sandbox only: every operation received (failed attempts included), from index `since`."""
        if since < 0:
            payload = {"code": "invalid_argument", "retryable": False, "message": "since must be >= 0"}
            raise ToolError(json.dumps(payload))
        return {"calls": platform.calls[since:], "total": len(platform.calls)}

    @server.tool()
    def sandbox_fail_next(calls: int) -> dict[str, Any]:
        """Sandbox only: make the next `calls` operations fail with a transient error."""
        platform.fail_next(calls)
        return {"failing_calls": calls}

    @server.tool()
    def sandbox_malform_next_reports(calls: int) -> dict[str, Any]:
        """Sandbox only: answer the next `calls` get_report requests with malformed reports."""
        if not 0 <= calls <= 1000:
            payload = {"code": "invalid_argument", "retryable": False, "message": "calls must be in 0..1000"}
            raise ToolError(json.dumps(payload))
        platform.malformed_reports = calls
        return {"malformed_reports": calls}

    @server.custom_route("/healthz", methods=["GET"])
    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse(platform.health())

    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="GAELP ad-platform sandbox (MCP over streamable HTTP)")
    parser.add_argument("--transport", choices=["streamable-http", "stdio"], default="streamable-http")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--transient-error-rate", type=float, default=0.02)
    parser.add_argument("--report-delay-hours", type=int, default=3)
    parser.add_argument("--seconds-per-hour", type=float, default=0.0, help="0: the clock moves only by tool")
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    config = SandboxConfig(
        seed=args.seed,
        transient_error_rate=args.transient_error_rate,
        report_delay_hours=args.report_delay_hours,
    )
    server = build_server(SandboxPlatform(config), args.seconds_per_hour, args.log_level)
    if args.transport == "stdio":
        server.run(transport="stdio")
    else:
        server.run(transport="streamable-http", host=args.host, port=args.port)


if __name__ == "__main__":
    main()
