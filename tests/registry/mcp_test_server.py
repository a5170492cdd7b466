"""A minimal real MCP server for the registry's health tests (not the platform sandbox).

Built with the mcp SDK and served over streamable HTTP at http://127.0.0.1:<port>/mcp, so the
registry's MCP probe talks to it exactly as it would to the sandbox or a real platform connector.

    python tests/registry/mcp_test_server.py <port>
"""

from __future__ import annotations

import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("registry-health-test-server", version="1.0.0", log_level="WARNING")


@server.tool()
def account_status() -> str:
    """A stand-in tool, so that listing tools returns something to count."""
    return "active"


if __name__ == "__main__":
    server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
