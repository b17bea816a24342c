"""The few places where the front reaches past the mcp SDK's public surface, kept together.

The low-level server hands each handler a per-request `ServerSession`; forwarding raw messages
to the right client needs its request-scoped channel and its connection, which the SDK keeps in
private attributes (mcp 2.3); the express lane also asks the HTTP session manager whether a
session is still open. If an SDK release moves them, this module is what changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.dispatcher import CallOptions
from starlette.requests import Request

Context = ServerRequestContext[Any, Any]


def connection_of(ctx: Context) -> Connection:
    connection: Connection = ctx.session._connection
    return connection


async def request_client(
    ctx: Context, method: str, params: Mapping[str, Any] | None, timeout: float
) -> dict[str, Any]:
    """Ask the client on the channel of the request `ctx` belongs to (its own SSE stream)."""
    options: CallOptions = {"timeout": timeout}
    return await ctx.session._request_outbound.send_raw_request(method, params, options)


async def notify_client(ctx: Context, method: str, params: Mapping[str, Any] | None) -> None:
    """Notify the client on the channel of the request `ctx` belongs to."""
    await ctx.session._request_outbound.notify(method, params)


def session_of(ctx: Context) -> str | None:
    """The streamable HTTP session id of the request `ctx` belongs to, if it came that way."""
    request = ctx.request
    if isinstance(request, Request):
        return request.headers.get(MCP_SESSION_ID_HEADER)
    return None


def session_open(manager: StreamableHTTPSessionManager, session_id: str) -> bool:
    """Whether the manager still serves the session (not ended by DELETE nor expired)."""
    transport = manager._server_instances.get(session_id)
    return transport is not None and not transport.is_terminated
