"""The connected clients, as the servers' `Upstream`: what a server sends on its own reaches the
client it concerns — the one whose call caused it, or the subscribers of a resource, or all."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from mcp import MCPError
from mcp.server.connection import Connection
from mcp.server.subscriptions import InMemorySubscriptionBus
from mcp.shared.subscriptions import (
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    ServerEvent,
    ToolsListChanged,
)

from cua_gateway.errors import DownstreamError
from cua_gateway.front._sdk import Context, connection_of, request_client, session_of
from cua_gateway.front.inputs import Exchange
from cua_gateway.pipeline.router import Router

logger = logging.getLogger(__name__)

CLIENT_REQUEST_TIMEOUT = 300.0  # seconds a person may take to answer a sampling or elicitation
AMBIGUOUS = -32603
BROADCAST = frozenset(
    {
        "notifications/tools/list_changed",
        "notifications/prompts/list_changed",
        "notifications/resources/list_changed",
    }
)


@runtime_checkable
class Origin(Protocol):
    """The client request a downstream call serves: where what its server says goes."""

    @property
    def connection(self) -> Connection:
        """The client's session (for what concerns the session, e.g. log messages)."""
        ...

    @property
    def exchange(self) -> Exchange | None:
        """Set for a client without a back-channel (2026-07-28): what its servers ask goes here."""
        ...

    async def ask(
        self, method: str, params: Mapping[str, Any] | None, timeout: float
    ) -> dict[str, Any]:
        """Send a request to the client on the channel of this call, and return its answer."""
        ...


@dataclass(frozen=True, slots=True, eq=False)
class CallOrigin:
    """A request the SDK's server runner serves (`ctx`)."""

    ctx: Context
    exchange: Exchange | None = None

    @property
    def connection(self) -> Connection:
        return connection_of(self.ctx)

    async def ask(
        self, method: str, params: Mapping[str, Any] | None, timeout: float
    ) -> dict[str, Any]:
        return await request_client(self.ctx, method, params, timeout)


_LISTEN_EVENTS: dict[str, Callable[[], ServerEvent]] = {
    "notifications/tools/list_changed": ToolsListChanged,
    "notifications/prompts/list_changed": PromptsListChanged,
    "notifications/resources/list_changed": ResourcesListChanged,
}


class ClientHub:
    def __init__(self, router: Router) -> None:
        self._router = router
        self.listeners = InMemorySubscriptionBus()
        """2026-07-28 clients get list changes and resource updates on `subscriptions/listen`."""
        self._connections: weakref.WeakSet[Connection] = weakref.WeakSet()
        self._sessions: weakref.WeakValueDictionary[str, Connection] = weakref.WeakValueDictionary()
        self._subscribers: dict[str, weakref.WeakSet[Connection]] = {}

    def count(self) -> int:
        """Client sessions connected now (for metrics)."""
        return len(self._connections)

    def seen(self, ctx: Context, exchange: Exchange | None = None) -> CallOrigin:
        """Note the client behind a request; the origin to pass along with its calls."""
        connection = connection_of(ctx)
        self._connections.add(connection)
        session_id = session_of(ctx)
        if session_id is not None:
            self._sessions[session_id] = connection
        return CallOrigin(ctx, exchange)

    def only_connection(self) -> Connection | None:
        """The client's connection, when one client is connected (the stdio front's case)."""
        connections = list(self._connections)
        return connections[0] if len(connections) == 1 else None

    def connection(self, session_id: str) -> Connection | None:
        """The connection of a streamable HTTP session seen before, by its session id."""
        return self._sessions.get(session_id)

    def subscribe(self, ctx: Context, uri: str) -> None:
        self._subscribers.setdefault(uri, weakref.WeakSet()).add(connection_of(ctx))

    def subscribed(self, uri: str) -> bool:
        """Whether a handshake-era client holds a subscription to `uri` (exposed URI)."""
        return bool(self._subscribers.get(uri))

    def unsubscribe(self, ctx: Context, uri: str) -> None:
        self._subscribers.get(uri, weakref.WeakSet()).discard(connection_of(ctx))

    async def notify(
        self, server: str, method: str, params: Mapping[str, Any] | None, origins: Sequence[object]
    ) -> None:
        if method in BROADCAST:
            targets = list(self._connections)
            await self.listeners.publish(_LISTEN_EVENTS[method]())
        elif method == "notifications/resources/updated" and params:
            exposed = self._router.exposed_uri(server, str(params.get("uri")))
            params = {**params, "uri": exposed}
            targets = list(self._subscribers.get(exposed, ()))
            await self.listeners.publish(ResourceUpdated(uri=exposed))
        elif method == "notifications/message":
            targets = [o.connection for o in origins if isinstance(o, Origin)][:1]
            targets = targets or list(self._connections)
        else:
            logger.debug("%s: not forwarded: %s", server, method)
            return
        for connection in targets:
            try:
                await connection.notify(method, params)
            except Exception as e:
                logger.debug("could not notify a client of %s: %s", method, e)

    async def request(
        self, server: str, method: str, params: Mapping[str, Any] | None, origins: Sequence[object]
    ) -> dict[str, Any]:
        callers = [o for o in origins if isinstance(o, Origin)]
        try:
            if len(callers) == 1 and (exchange := callers[0].exchange) is not None:
                return await exchange.ask(server, method, params)
            if len(callers) == 1:
                return await callers[0].ask(method, params, CLIENT_REQUEST_TIMEOUT)
            connections = list(self._connections)
            if not callers and len(connections) == 1:
                options = {"timeout": CLIENT_REQUEST_TIMEOUT}
                return await connections[0].send_raw_request(method, params, options)  # type: ignore[arg-type]
        except MCPError as e:  # the client's own answer goes back to the server as it is
            raise DownstreamError(server, e.code, e.message, e.data) from e
        who = f"{len(callers)} clients have calls in flight" if callers else "no call is in flight"
        raise DownstreamError(
            server, AMBIGUOUS, f"cannot tell which client should answer {method}: {who}"
        )
