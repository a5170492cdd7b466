"""One health probe of a remote environment, bounded by a timeout, never raising.

MCP endpoints (the platform sandbox, real platform connectors): open an MCP client session over
streamable HTTP, negotiate the protocol and list the tools — the same first steps a connector
takes, so "healthy" means "a connector could start now". Plain HTTP(S) endpoints: a GET that
answers below 400.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp
from mcp import Client

from gaelp.db.registry import Health, RemoteProtocol, RemoteTarget

_MAX_DETAIL = 500


@dataclass(frozen=True)
class ProbeResult:
    health: Health
    detail: str
    duration_s: float


def _root_causes(error: BaseException) -> list[BaseException]:
    """The leaf exceptions of (nested) exception groups: the MCP client raises through task groups."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _root_causes(inner)]
    return [error]


def describe_failure(error: BaseException) -> str:
    causes = _root_causes(error)
    text = "; ".join(f"{type(cause).__name__}: {cause}".rstrip(": ") for cause in causes)
    return text[:_MAX_DETAIL]


async def _mcp_session(url: str) -> str:
    # cache=None: a probe must reach the server every time, never answer from the client cache.
    async with Client(url, cache=None) as client:
        tools = await client.list_tools()
        info = client.server_info
        name = f"{info.name} {info.version}".strip() if info is not None else "unnamed server"
        tool_names = ", ".join(sorted(tool.name for tool in tools.tools))
        return f"MCP {client.protocol_version}: {name}, {len(tools.tools)} tools ({tool_names})"


async def _http_get(url: str, timeout_s: float) -> tuple[bool, str]:
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
        return response.status < 400, f"HTTP {response.status} {response.reason or ''}".rstrip()


async def probe(target: RemoteTarget, timeout_s: float) -> ProbeResult:
    """Probe one endpoint; any failure, including no answer within timeout_s, is UNHEALTHY."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            if target.protocol is RemoteProtocol.MCP:
                healthy, detail = True, await _mcp_session(target.url)
            elif target.protocol is RemoteProtocol.HTTP:
                healthy, detail = await _http_get(target.url, timeout_s)
            else:
                raise ValueError(f"no probe for protocol {target.protocol.value!r}")
    except TimeoutError:
        healthy, detail = False, f"no answer within {timeout_s:g} s"
    except Exception as error:  # every failure is a health finding, not a crash
        healthy, detail = False, f"unreachable: {describe_failure(error)}"
    duration = time.perf_counter() - started
    health = Health.HEALTHY if healthy else Health.UNHEALTHY
    return ProbeResult(health, f"{detail} [{duration * 1000:.0f} ms]", duration)
