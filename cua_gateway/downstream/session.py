"""An initialized MCP client session with one replica: the downstream adapter of the mcp SDK.

Requests go out raw (method + params dict in, result dict out) so that whatever a server answers is
forwarded as it is, and the SDK's errors become the gateway's own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
from mcp import ClientSession, MCPError
from mcp.shared.dispatcher import CallOptions, ProgressFnT
from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher
from mcp.types import CONNECTION_CLOSED, REQUEST_TIMEOUT, Implementation

from cua_gateway import __version__
from cua_gateway.errors import CallTimeout, DownstreamError, ReplicaLost, StartError
from cua_gateway.runtime.base import Link

ProgressFn = ProgressFnT
MAX_PAGES = 100  # a server that paginates forever is cut off here


@dataclass(frozen=True, slots=True)
class ServerInfo:
    name: str
    version: str
    protocol_version: str
    capabilities: Mapping[str, Any]


class DownstreamSession:
    def __init__(
        self, server: str, replica: int, dispatcher: JSONRPCDispatcher[Any], info: ServerInfo
    ) -> None:
        self.server = server
        self.replica = replica
        self.info = info
        self._dispatcher = dispatcher

    async def request(
        self,
        method: str,
        params: Mapping[str, Any] | None,
        *,
        timeout: float,
        on_progress: ProgressFn | None = None,
    ) -> dict[str, Any]:
        options: CallOptions = {"timeout": timeout}
        if on_progress is not None:
            options["on_progress"] = on_progress
        try:
            return await self._dispatcher.send_raw_request(method, params, options)
        except MCPError as e:
            raise self._translate(e, method, timeout) from e
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream) as e:
            raise ReplicaLost(self.server, "connection closed", replica=self.replica) from e

    async def ping(self, timeout: float) -> None:
        await self.request("ping", None, timeout=timeout)

    async def list_tools(self, timeout: float) -> list[dict[str, Any]]:
        tools: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            page = await self.request(
                "tools/list", {"cursor": cursor} if cursor else None, timeout=timeout
            )
            tools.extend(page.get("tools", []))
            cursor = page.get("nextCursor")
            if not cursor:
                break
        return tools

    def _translate(self, error: MCPError, method: str, timeout: float) -> Exception:
        if error.code == CONNECTION_CLOSED:
            return ReplicaLost(self.server, "connection closed", replica=self.replica)
        if error.code == REQUEST_TIMEOUT:
            return CallTimeout(self.server, method, timeout, replica=self.replica)
        return DownstreamError(
            self.server, error.code, error.message, error.data, replica=self.replica
        )


@asynccontextmanager
async def connect(
    link: Link, server: str, replica: int, *, timeout: float
) -> AsyncIterator[DownstreamSession]:
    """Open a session over `link`; complete the handshake (protocol 2025-11-25) within `timeout`."""
    dispatcher: JSONRPCDispatcher[Any] = JSONRPCDispatcher(link.read, link.write)
    client_info = Implementation(name="cua-gateway", version=__version__)
    async with ClientSession(dispatcher=dispatcher, client_info=client_info) as session:
        try:
            with anyio.fail_after(timeout):
                result = await session.initialize()
        except TimeoutError as e:
            raise StartError(server, replica, f"no answer to initialize within {timeout:g}s") from e
        except MCPError as e:
            raise StartError(server, replica, f"initialize failed: {e.message}") from e
        info = ServerInfo(
            name=result.server_info.name,
            version=result.server_info.version,
            protocol_version=str(result.protocol_version),
            capabilities=result.capabilities.model_dump(by_alias=True, exclude_none=True),
        )
        yield DownstreamSession(server, replica, dispatcher, info)
