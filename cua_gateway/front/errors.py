"""The one place where the gateway's errors become JSON-RPC errors for clients."""

from __future__ import annotations

from mcp import MCPError

from cua_gateway.errors import (
    CallTimeout,
    DownstreamError,
    GatewayError,
    InvalidRequest,
    ReplicaLost,
    ServerError,
    Unavailable,
)

INVALID_PARAMS = -32602  # JSON-RPC: unknown tool, arguments that do not fit its schema
INTERNAL_ERROR = -32603  # JSON-RPC: a fault of the gateway itself
REQUEST_TIMEOUT = -32001  # MCP SDK: no answer in time
SERVER_UNAVAILABLE = -32010  # no replica of the server can take the call
SERVER_LOST = -32011  # the replica went away during the call


def to_mcp_error(error: Exception) -> MCPError:
    """A clear message naming the server; never a traceback."""
    if isinstance(error, InvalidRequest):
        return MCPError(INVALID_PARAMS, str(error))
    if isinstance(error, DownstreamError):  # the server's own error, as it sent it
        return MCPError(error.code, f"{error.server}: {error.error_message}", error.data)
    data = {"server": error.server} if isinstance(error, ServerError) else None
    if isinstance(error, CallTimeout):
        return MCPError(REQUEST_TIMEOUT, str(error), data)
    if isinstance(error, Unavailable):
        return MCPError(SERVER_UNAVAILABLE, f"{error} (server unavailable)", data)
    if isinstance(error, ReplicaLost):
        return MCPError(SERVER_LOST, str(error), data)
    if isinstance(error, GatewayError):
        return MCPError(INTERNAL_ERROR, str(error), data)
    return MCPError(INTERNAL_ERROR, f"internal error: {type(error).__name__}")
