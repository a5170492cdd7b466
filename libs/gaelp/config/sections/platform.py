"""Settings of the MCP connector to an ad platform (the sandbox by default). Kept in the config
package so that loading settings does not import the connector, the MCP client or the simulator."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_TOOL_NAMES: dict[str, str] = {
    "create_campaign": "create_campaign",
    "update_bid": "update_bid",
    "update_budget": "update_budget",
    "update_creative": "update_creative",
    "update_audience": "update_audience",
    "pause": "pause_campaign",
    "resume": "resume_campaign",
    "fetch_report": "get_report",
    "account_spend": "get_account_spend",
    "health": "health",
}


class McpConnectorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field("http://127.0.0.1:8765/mcp", description="streamable-HTTP endpoint of the MCP server")
    command: list[str] | None = Field(
        None, description="instead of url: launch this MCP server command and speak MCP over its stdio"
    )
    call_timeout_s: float = Field(10.0, gt=0, description="limit on one tool call")
    connect_timeout_s: float = Field(10.0, gt=0, description="limit on opening a session")
    max_attempts: int = Field(4, ge=1, description="tries per operation, the first included")
    backoff_s: float = Field(0.2, ge=0, description="wait before the 2nd try; doubles each time")
    max_backoff_s: float = Field(5.0, ge=0)
    tool_names: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_TOOL_NAMES))
    retryable_error_markers: list[str] = Field(
        default_factory=lambda: ["rate limit", "temporarily unavailable", "try again", "timeout"],
        description="substrings that mark a platform's plain-text tool error as transient",
    )
