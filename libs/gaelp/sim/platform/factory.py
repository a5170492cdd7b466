"""Entry point of the platform environment: 'gaelp.sim.platform.factory:make_platform_connector'.

A config (a mapping or McpConnectorConfig) names the MCP endpoint: the sandbox by default, a real
platform's MCP server by changing `url` (and `tool_names` when its tools are named differently).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gaelp.sim.platform.mcp_client import McpConnectorConfig, McpPlatformConnector


def make_platform_connector(
    config: McpConnectorConfig | Mapping[str, Any] | None = None,
) -> McpPlatformConnector:
    if config is None or isinstance(config, McpConnectorConfig):
        return McpPlatformConnector(config)
    return McpPlatformConnector(McpConnectorConfig.model_validate(dict(config)))
