"""The gateway as one MCP server (the SDK's low-level `Server`): every handler hands the raw
request to the router and returns the server's raw answer."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from mcp import MCPError
from mcp.server import Server
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.models import InitializationOptions
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp_types.methods import CACHEABLE_METHODS
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from cua_gateway import __version__, logs
from cua_gateway.downstream.session import ProgressFn
from cua_gateway.errors import GatewayError
from cua_gateway.front._sdk import Context, notify_client
from cua_gateway.front.clients import CallOrigin, ClientHub, Origin
from cua_gateway.front.errors import to_mcp_error
from cua_gateway.front.inputs import InputBridge
from cua_gateway.front.listen import ListenBridge
from cua_gateway.metrics import Metrics
from cua_gateway.pipeline.router import Router

INSTRUCTIONS = (
    "cua-gateway serves the tools, prompts and resources of several MCP servers; names may carry "
    "their server's name as a prefix."
)
Work = Callable[[], Awaitable[dict[str, Any]]]
logger = logging.getLogger(__name__)


class GatewayServer(Server[Any]):
    """Announces the list changes it forwards."""

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        return super().create_initialization_options(
            notification_options or NotificationOptions(True, True, True),
            experimental_capabilities,
            extensions,
        )


@dataclass(frozen=True, slots=True)
class _Progress:
    """Relays a server's progress to the client, under the client's own progress token."""

    ctx: Context
    token: str | int

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        params: dict[str, Any] = {"progressToken": self.token, "progress": progress}
        if total is not None:
            params["total"] = total
        if message is not None:
            params["message"] = message
        try:
            await notify_client(self.ctx, "notifications/progress", params)
        except Exception:  # the client's request is over (it got an InputRequiredResult): drop
            logger.debug("progress for a finished client request dropped")


class Handlers:
    """The gateway's answers to client requests (the express lane shares them)."""

    def __init__(
        self, router: Router, hub: ClientHub, metrics: Metrics, bridge: InputBridge
    ) -> None:
        self.router = router
        self.hub = hub
        self.metrics = metrics
        self.bridge = bridge
        self.listen = ListenBridge(hub, router)

    async def _guarded(self, ctx: Context, work: Work, labels: Sequence[str] = ("", "")) -> Any:
        """Run `work`, counted under (server, tool) `labels`, and turn every failure into a
        JSON-RPC error."""
        logs.bind(method=ctx.method, request_id=ctx.request_id)
        with self.counted(ctx.method, labels):
            return _for_era(ctx, await work())

    @contextmanager
    def counted(self, method: str, labels: Sequence[str] = ("", "")) -> Iterator[None]:
        """Count a request under (server, tool) `labels` — read when it is done, since a call
        learns its server on the way — by outcome; a gateway failure becomes an MCPError."""
        outcome = "ok"
        try:
            yield
        except GatewayError as e:
            outcome = "error"
            raise to_mcp_error(e) from e
        except MCPError:
            outcome = "error"
            raise
        finally:
            server, tool = labels
            self.metrics.requests.labels(method, server, tool, outcome).inc()

    async def list_tools(self, ctx: Context, _: Any) -> Any:
        self.hub.seen(ctx)

        async def listing() -> dict[str, Any]:
            entries = (await self.router.settled_tools()).entries.values()
            return {"tools": [dict(e.definition) for e in entries]}

        return await self._guarded(ctx, listing)

    async def call_tool(self, ctx: Context, _: Any) -> Any:
        params = dict(ctx.params or {})
        back_channel = ctx.session.can_send_request
        if not back_channel and "requestState" in params:  # a 2026-07-28 client's retry
            return await self._guarded(ctx, lambda: self.bridge.resume(params))
        exchange = None if back_channel else self.bridge.new()
        origin = self.hub.seen(ctx, exchange)
        name = str(params.get("name"))
        meta = params.get("_meta") or {}
        token = meta.get("progressToken")
        labels = ["", name]
        progress = _Progress(ctx, token) if token is not None else None

        def call() -> Awaitable[dict[str, Any]]:
            return self.invoke_tool(name, params, progress, origin, labels)

        if exchange is not None:  # what the server asks comes back as an InputRequiredResult
            return await self._guarded(ctx, lambda: self.bridge.serve(exchange, call), labels)
        return await self._guarded(ctx, call, labels)

    async def invoke_tool(
        self,
        name: str,
        params: Mapping[str, Any],
        on_progress: ProgressFn | None,
        origin: Origin,
        labels: list[str],
    ) -> dict[str, Any]:
        """Call the tool `name` exposes on its server; `labels` learn (server, tool)."""
        entry = await self.router.tool(name)
        labels[:] = [entry.server, entry.original]
        logs.bind(server=entry.server, tool=entry.original)
        started = time.perf_counter()
        try:
            return await self.router.call_tool(
                entry,
                params.get("arguments"),
                params.get("_meta") or {},
                on_progress=on_progress,
                origin=origin,
            )
        finally:
            elapsed = time.perf_counter() - started
            self.metrics.tool_latency.labels(entry.server, entry.original).observe(elapsed)

    async def list_prompts(self, ctx: Context, _: Any) -> Any:
        self.hub.seen(ctx)
        return await self._guarded(ctx, lambda: _wrap("prompts", self.router.list_prompts()))

    async def get_prompt(self, ctx: Context, _: Any) -> Any:
        params = dict(ctx.params or {})

        def get(origin: CallOrigin) -> Work:
            return lambda: self.router.get_prompt(params, origin)

        return await self._interactive(ctx, params, get)

    async def _interactive(
        self, ctx: Context, params: dict[str, Any], work: Callable[[CallOrigin], Work]
    ) -> Any:
        """A request whose server may ask the client something (prompts/get, resources/read):
        for a client without a back-channel, through the era bridge."""
        if ctx.session.can_send_request:
            return await self._guarded(ctx, work(self.hub.seen(ctx)))
        if "requestState" in params:
            return await self._guarded(ctx, lambda: self.bridge.resume(params))
        exchange = self.bridge.new()
        started = work(self.hub.seen(ctx, exchange))
        return await self._guarded(ctx, lambda: self.bridge.serve(exchange, started))

    async def list_resources(self, ctx: Context, _: Any) -> Any:
        self.hub.seen(ctx)
        return await self._guarded(ctx, lambda: _wrap("resources", self.router.list_resources()))

    async def list_templates(self, ctx: Context, _: Any) -> Any:
        self.hub.seen(ctx)
        listing = self.router.list_resource_templates
        return await self._guarded(ctx, lambda: _wrap("resourceTemplates", listing()))

    async def read_resource(self, ctx: Context, _: Any) -> Any:
        params = dict(ctx.params or {})

        def read(origin: CallOrigin) -> Work:
            return lambda: self.router.resource_request("resources/read", params, origin)

        return await self._interactive(ctx, params, read)

    async def subscribe(self, ctx: Context, _: Any) -> Any:
        self.hub.subscribe(ctx, str((ctx.params or {}).get("uri")))
        return await self._by_uri(ctx, "resources/subscribe")

    async def unsubscribe(self, ctx: Context, _: Any) -> Any:
        uri = str((ctx.params or {}).get("uri"))
        self.hub.unsubscribe(ctx, uri)
        if self.listen.held(uri) or self.hub.subscribed(uri):  # others still want its updates
            self.hub.seen(ctx)
            return await self._guarded(ctx, _nothing)
        return await self._by_uri(ctx, "resources/unsubscribe")

    async def _by_uri(self, ctx: Context, method: str) -> Any:
        origin = self.hub.seen(ctx)
        params = ctx.params or {}
        return await self._guarded(
            ctx, lambda: self.router.resource_request(method, params, origin)
        )

    async def complete(self, ctx: Context, _: Any) -> Any:
        origin = self.hub.seen(ctx)
        return await self._guarded(ctx, lambda: self.router.complete(ctx.params or {}, origin))

    async def set_level(self, ctx: Context, _: Any) -> Any:
        self.hub.seen(ctx)

        async def apply() -> dict[str, Any]:
            await self.router.set_level(str((ctx.params or {}).get("level")))
            return {}

        return await self._guarded(ctx, apply)


def build_server(handlers: Handlers, hub: ClientHub) -> GatewayServer:
    with warnings.catch_warnings():  # logging/setLevel is deprecated in 2026-07-28, still served
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        return GatewayServer(
            "cua-gateway",
            version=__version__,
            instructions=INSTRUCTIONS,
            on_list_tools=handlers.list_tools,
            on_call_tool=handlers.call_tool,
            on_list_prompts=handlers.list_prompts,
            on_get_prompt=handlers.get_prompt,
            on_list_resources=handlers.list_resources,
            on_list_resource_templates=handlers.list_templates,
            on_read_resource=handlers.read_resource,
            on_subscribe_resource=handlers.subscribe,
            on_unsubscribe_resource=handlers.unsubscribe,
            on_completion=handlers.complete,
            on_set_logging_level=handlers.set_level,
            on_subscriptions_listen=handlers.listen,
        )


def _for_era(ctx: Context, result: dict[str, Any]) -> dict[str, Any]:
    """Results for 2026-07-28 clients carry `resultType`, and cacheable ones `ttlMs` and
    `cacheScope`; handshake-era servers do not send them, so the gateway adds what is missing
    (complete, not cached: the gateway cannot promise a server's result stays valid)."""
    if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
        return result
    filled = {"resultType": "complete", **result}
    if ctx.method in CACHEABLE_METHODS:
        filled = {"ttlMs": 0, "cacheScope": "private", **filled}
    return filled


async def _nothing() -> dict[str, Any]:
    return {}


async def _wrap(key: str, listing: Awaitable[list[dict[str, Any]]]) -> dict[str, Any]:
    return {key: await listing}
