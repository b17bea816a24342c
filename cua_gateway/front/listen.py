"""`subscriptions/listen` for 2026-07-28 clients, with resource subscriptions bridged downstream.

The SDK's `ListenHandler` serves the stream: list changes and resource updates the hub publishes
on its bus. A listener's `resourceSubscriptions` name resources of handshake-era servers, which
announce updates only to a session that sent `resources/subscribe`; so the gateway subscribes
downstream on the listeners' behalf — once per resource, when the first listener wants it — and
unsubscribes when the last listener of it is gone, unless a handshake-era client still holds a
subscription of its own (and a handshake-era client's unsubscribe is not passed on while
listeners hold the resource).
"""

from __future__ import annotations

import logging
from collections import Counter

import anyio
from mcp.server.subscriptions import ListenHandler
from mcp.types import SubscriptionsListenRequestParams, SubscriptionsListenResult

from cua_gateway.errors import GatewayError
from cua_gateway.front._sdk import Context
from cua_gateway.front.clients import CallOrigin, ClientHub
from cua_gateway.pipeline.router import Router

logger = logging.getLogger(__name__)

RELEASE_TIMEOUT = 10.0  # seconds to unsubscribe downstream once a listen stream has ended


class ListenBridge:
    def __init__(self, hub: ClientHub, router: Router) -> None:
        self._hub = hub
        self._router = router
        self._handler = ListenHandler(hub.listeners)
        self._listeners: Counter[str] = Counter()  # listen streams per exposed resource URI

    def held(self, uri: str) -> bool:
        """Whether a listener holds the downstream subscription of `uri` (exposed URI)."""
        return self._listeners[uri] > 0

    async def __call__(
        self, ctx: Context, params: SubscriptionsListenRequestParams
    ) -> SubscriptionsListenResult:
        uris = list(dict.fromkeys(params.notifications.resource_subscriptions or ()))
        origin = self._hub.seen(ctx)
        held: list[str] = []
        try:
            for uri in uris:
                self._listeners[uri] += 1
                held.append(uri)
                if self._listeners[uri] == 1 and not self._hub.subscribed(uri):
                    await self._forward("resources/subscribe", uri, origin)
            return await self._handler(ctx, params)
        finally:
            gone = [uri for uri in held if self._release(uri)]
            with anyio.CancelScope(shield=True), anyio.move_on_after(RELEASE_TIMEOUT):
                for uri in gone:
                    await self._forward("resources/unsubscribe", uri, origin)

    def _release(self, uri: str) -> bool:
        """Count one listener of `uri` out; whether its downstream subscription should go."""
        self._listeners[uri] -= 1
        if self._listeners[uri] > 0:
            return False
        del self._listeners[uri]
        return not self._hub.subscribed(uri)

    async def _forward(self, method: str, uri: str, origin: CallOrigin) -> None:
        """Subscribe or unsubscribe downstream; a server that refuses, or is down, leaves the
        listener without that resource's updates, as a handshake-era subscriber would be."""
        try:
            await self._router.resource_request(method, {"uri": uri}, origin)
        except GatewayError as e:
            logger.warning("%s %s for a listener failed: %s", method, uri, e)
