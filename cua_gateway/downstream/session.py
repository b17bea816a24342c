"""An initialized MCP client session with one replica: the downstream adapter of the mcp SDK.

Requests go out raw (method + params dict in, result dict out) so that whatever a server answers is
forwarded as it is, and the SDK's errors become the gateway's own.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import anyio
from mcp import ClientSession, MCPError
from mcp.shared.dispatcher import CallOptions, ProgressFnT
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher
from mcp.types import (
    CONNECTION_CLOSED,
    REQUEST_TIMEOUT,
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequestParams,
    ElicitResult,
    ErrorData,
    Implementation,
    ListRootsResult,
)
from pydantic import BaseModel

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
        return await list_all(partial(self.request, timeout=timeout), "tools/list", "tools")

    def _translate(self, error: MCPError, method: str, timeout: float) -> Exception:
        if error.code == CONNECTION_CLOSED:
            return ReplicaLost(self.server, "connection closed", replica=self.replica)
        if error.code == REQUEST_TIMEOUT:
            return CallTimeout(self.server, method, timeout, replica=self.replica)
        return DownstreamError(
            self.server, error.code, error.message, error.data, replica=self.replica
        )


class Requester(Protocol):
    async def __call__(self, method: str, params: Mapping[str, Any] | None) -> dict[str, Any]: ...


async def list_all(request: Requester, method: str, key: str) -> list[dict[str, Any]]:
    """Every page of a paginated list (`key` holds each page's items)."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        page = await request(method, {"cursor": cursor} if cursor else None)
        items.extend(page.get(key, []))
        cursor = page.get("nextCursor")
        if not cursor:
            break
    return items


OnNotification = Callable[[str, dict[str, Any]], Awaitable[None]]
OnRequest = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Handlers:
    """What to do with what the server sends on its own: notifications, and requests that only
    a client can answer (sampling, elicitation, roots)."""

    notification: OnNotification
    request: OnRequest

    def callbacks(self) -> dict[str, Any]:
        """ClientSession's callbacks, forwarding everything raw (as the server sent it)."""

        async def ask(method: str, params: BaseModel | None, result: type[BaseModel]) -> Any:
            raw = params.model_dump(by_alias=True, mode="json", exclude_none=True) if params else {}
            try:
                return result.model_validate(await self.request(method, raw), by_name=False)
            except DownstreamError as e:
                return ErrorData(code=e.code, message=e.error_message, data=e.data)

        async def sampling(_: Any, params: CreateMessageRequestParams) -> Any:
            return await ask("sampling/createMessage", params, CreateMessageResult)

        async def elicitation(_: Any, params: ElicitRequestParams) -> Any:
            return await ask("elicitation/create", params, ElicitResult)

        async def roots(_: Any) -> Any:
            return await ask("roots/list", None, ListRootsResult)

        async def message(message: Any) -> None:
            if isinstance(message, BaseModel):
                raw = message.model_dump(by_alias=True, mode="json", exclude_none=True)
                if raw.get("method") != "notifications/progress":  # delivered per request
                    await self.notification(str(raw["method"]), raw.get("params") or {})

        return {
            "sampling_callback": sampling,
            "elicitation_callback": elicitation,
            "list_roots_callback": roots,
            "message_handler": message,
        }


@asynccontextmanager
async def connect(
    link: Link, server: str, replica: int, *, timeout: float, handlers: Handlers
) -> AsyncIterator[DownstreamSession]:
    """Open a session over `link`; complete the handshake (protocol 2025-11-25) within `timeout`."""
    dispatcher: JSONRPCDispatcher[Any] = JSONRPCDispatcher(link.read, link.write)
    client_info = Implementation(name="cua-gateway", version=__version__)
    with warnings.catch_warnings():  # sampling and roots are deprecated in 2026-07-28, not gone
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        session = ClientSession(
            dispatcher=dispatcher, client_info=client_info, **handlers.callbacks()
        )
    async with session:
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
