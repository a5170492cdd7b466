"""Phases 3-4: the ad-platform connector (MCP client) and the platform sandbox server."""
