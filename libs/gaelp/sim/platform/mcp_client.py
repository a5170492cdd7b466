"""PlatformConnector over MCP: any ad platform's MCP server, or the GAELP platform sandbox.

Each operation is one tool call with a timeout. Transient failures (timeouts, connection errors,
tool errors marked retryable or matching a configured marker) are retried with exponential
backoff, reconnecting between attempts; anything else raises PlatformError with the server's
message. Tool names are configurable so a real platform's server can be plugged in by config.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, TypeVar

import anyio
import httpx2
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel, ValidationError

from gaelp.config.sections.platform import McpConnectorConfig
from gaelp.sim.platform.connector import (
    AccountSpend,
    BidStrategy,
    Campaign,
    CampaignReport,
    CampaignSpec,
    CreativeType,
    PlatformError,
    TransientPlatformError,
)

M = TypeVar("M", bound=BaseModel)
_TRANSPORT_ERRORS = (
    TimeoutError,
    OSError,
    MCPError,
    httpx2.HTTPError,
    anyio.BrokenResourceError,
    ExceptionGroup,
)
def _describe(error: BaseException) -> str:
    """The innermost cause of a transport failure (task groups wrap it in exception groups)."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return f"{type(error).__name__}: {error}"


class _ToolFailure(Exception):
    def __init__(self, code: str, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable


class McpPlatformConnector:
    """Use as `async with McpPlatformConnector(config) as platform: await platform.pause(id)`."""

    def __init__(self, config: McpConnectorConfig | None = None) -> None:
        self.config = config or McpConnectorConfig()
        self._client: Client | None = None
        self.attempts_made = 0  # total tool-call attempts, retries included (for reports and tests)

    async def __aenter__(self) -> McpPlatformConnector:
        await self._connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _connect(self) -> Client:
        if self._client is None:
            server: str | StdioServerParameters = self.config.url
            if self.config.command:
                server = StdioServerParameters(command=self.config.command[0], args=self.config.command[1:])
            client = Client(server, read_timeout_seconds=self.config.call_timeout_s)
            await asyncio.wait_for(client.__aenter__(), timeout=self.config.connect_timeout_s)
            self._client = client
        return self._client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.__aexit__(None, None, None)
            except Exception:
                pass

    def _parse_error(self, text: str) -> _ToolFailure:
        start = text.find("{")
        if start >= 0:
            try:
                payload = json.loads(text[start:])
                return _ToolFailure(
                    str(payload.get("code", "error")),
                    str(payload.get("message", text)),
                    bool(payload.get("retryable")),
                )
            except (json.JSONDecodeError, AttributeError):
                pass
        lowered = text.lower()
        retryable = any(marker in lowered for marker in self.config.retryable_error_markers)
        return _ToolFailure("unavailable" if retryable else "error", text, retryable)

    async def _call_once(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        client = await self._connect()
        result = await asyncio.wait_for(
            client.call_tool(tool, arguments, read_timeout_seconds=self.config.call_timeout_s),
            timeout=self.config.call_timeout_s,
        )
        text = "".join(getattr(block, "text", "") for block in result.content)
        if result.is_error:
            raise self._parse_error(text)
        if result.structured_content is not None:
            return dict(result.structured_content)
        try:
            return dict(json.loads(text))
        except (json.JSONDecodeError, TypeError, ValueError) as error:
            raise _ToolFailure(
                "bad_response", f"tool {tool!r} returned no JSON object: {text[:200]}", False
            ) from error

    async def call(self, operation: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """One operation with retries; raises TransientPlatformError once retries are spent."""
        tool = self.config.tool_names.get(operation, operation)
        delay = self.config.backoff_s
        last: PlatformError | None = None
        for attempt in range(self.config.max_attempts):
            if attempt > 0:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.config.max_backoff_s)
            self.attempts_made += 1
            try:
                return await self._call_once(tool, arguments)
            except _ToolFailure as failure:
                if not failure.retryable:
                    raise PlatformError(operation, str(failure), failure.code) from failure
                last = TransientPlatformError(operation, str(failure), failure.code)
            except _TRANSPORT_ERRORS as error:
                # The session may be broken: drop it and open a new one on the next attempt.
                await self.close()
                last = TransientPlatformError(operation, _describe(error), "unavailable")
        assert last is not None  # max_attempts >= 1, so the loop ran and failed
        raise last

    async def _parsed(self, operation: str, arguments: dict[str, Any], model: type[M]) -> M:
        """A tool's answer as the connector's type; an answer that does not fit is a refusal."""
        data = await self.call(operation, arguments)
        try:
            return model.model_validate(data)
        except ValidationError as error:
            raise PlatformError(operation, f"malformed answer: {str(error)[:300]}", "bad_response") from error

    # PlatformConnector
    async def create_campaign(self, spec: CampaignSpec, request_id: str) -> Campaign:
        return await self._parsed("create_campaign", spec.model_dump() | {"request_id": request_id}, Campaign)

    async def update_bid(
        self, campaign_id: str, bid: float, bid_strategy: BidStrategy | None = None
    ) -> Campaign:
        arguments: dict[str, Any] = {"campaign_id": campaign_id, "bid": bid}
        if bid_strategy is not None:
            arguments["bid_strategy"] = bid_strategy
        return await self._parsed("update_bid", arguments, Campaign)

    async def update_budget(self, campaign_id: str, daily_budget: float) -> Campaign:
        return await self._parsed("update_budget", {"campaign_id": campaign_id, "daily_budget": daily_budget},
                                  Campaign)

    async def update_creative(self, campaign_id: str, creative: CreativeType) -> Campaign:
        return await self._parsed("update_creative", {"campaign_id": campaign_id, "creative": creative},
                                  Campaign)

    async def update_audience(self, campaign_id: str, audience: str, audience_size: float) -> Campaign:
        arguments = {"campaign_id": campaign_id, "audience": audience, "audience_size": audience_size}
        return await self._parsed("update_audience", arguments, Campaign)

    async def pause(self, campaign_id: str) -> Campaign:
        return await self._parsed("pause", {"campaign_id": campaign_id}, Campaign)

    async def resume(self, campaign_id: str) -> Campaign:
        return await self._parsed("resume", {"campaign_id": campaign_id}, Campaign)

    async def fetch_report(self, campaign_id: str) -> CampaignReport:
        return await self._parsed("fetch_report", {"campaign_id": campaign_id}, CampaignReport)

    async def account_spend(self) -> AccountSpend:
        return await self._parsed("account_spend", {}, AccountSpend)

    async def health(self) -> dict[str, Any]:
        return await self.call("health", {})
