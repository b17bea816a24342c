"""The `remote` runtime: an MCP server that already runs, reached over streamable HTTP or SSE."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from cua_gateway.runtime.base import Exit, Link, ReplicaSpec

SSE_CONNECT_TIMEOUT = 10.0  # seconds to open the SSE stream
SSE_READ_TIMEOUT = 300.0  # seconds without an event before the SSE stream is considered dead


@asynccontextmanager
async def http_link(
    url: str, headers: Mapping[str, str], exit: Exit, where: str
) -> AsyncIterator[Link]:
    """Streamable HTTP to `url`; `exit` is the lifetime of what serves it, if the caller knows."""
    async with (
        create_mcp_http_client(headers=dict(headers)) as http,
        streamable_http_client(url, http_client=http) as (read, write),
    ):
        yield Link(read, write, exit, where)


class RemoteRuntime:
    async def prepare(self, spec: ReplicaSpec) -> None:
        """Nothing to prepare: the server runs elsewhere."""

    @asynccontextmanager
    async def open(self, spec: ReplicaSpec) -> AsyncIterator[Link]:
        config = spec.config
        assert config.url is not None
        if config.effective_transport == "sse":
            async with sse_client(
                config.url,
                headers=dict(config.headers),
                timeout=SSE_CONNECT_TIMEOUT,
                sse_read_timeout=SSE_READ_TIMEOUT,
            ) as (read, write):
                yield Link(read, write, Exit(), config.url)
        else:
            async with http_link(config.url, config.headers, Exit(), config.url) as link:
                yield link
