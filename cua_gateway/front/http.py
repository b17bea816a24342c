"""The HTTP face of the gateway: streamable HTTP at `/mcp`, legacy SSE at `/sse` + `/messages/`,
and `/healthz`, `/readyz` and the metrics endpoint, behind the guard."""

from __future__ import annotations

from typing import Protocol

from mcp.server.sse import SseServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from cua_gateway.front.guard import Guard, Policy
from cua_gateway.front.health import StatusSource, health_routes
from cua_gateway.front.lane_http import ExpressLane
from cua_gateway.front.mcp_server import GatewayServer
from cua_gateway.metrics import Metrics

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Streamable:
    """`/mcp` as a plain ASGI endpoint (a Route to it keeps the path exact: no redirects)."""

    def __init__(self, manager: StreamableHTTPSessionManager) -> None:
        self.manager = manager

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.manager.handle_request(scope, receive, send)


class Lane(Protocol):
    def __call__(self, inner: ASGIApp, manager: StreamableHTTPSessionManager) -> ExpressLane: ...


def mcp_routes(
    server: GatewayServer, manager: StreamableHTTPSessionManager, lane: Lane
) -> list[BaseRoute]:
    """`/mcp` (the express lane in front of the SDK's session manager) and the SSE pair."""
    sse = SseServerTransport("/messages/")

    async def connect_sse(request: Request) -> Response:
        streams = sse.connect_sse(request.scope, request.receive, request._send)
        async with streams as (read, write):
            await server.run(read, write, server.create_initialization_options())
        return Response()

    return [
        Route(
            "/mcp", endpoint=lane(_Streamable(manager), manager), methods=["GET", "POST", "DELETE"]
        ),
        Route("/sse", endpoint=connect_sse, methods=["GET"]),
        Mount("/messages/", app=sse.handle_post_message),
    ]


def metrics_route(metrics: Metrics, path: str) -> Route:
    async def exposition(_: Request) -> Response:
        return Response(metrics.exposition(), media_type=PROMETHEUS_CONTENT_TYPE)

    return Route(path, exposition)


def build_app(routes: list[BaseRoute], policy: Policy) -> ASGIApp:
    return Guard(Starlette(routes=routes), policy)


def observability_routes(status: StatusSource, metrics: Metrics, path: str) -> list[BaseRoute]:
    return [*health_routes(status), metrics_route(metrics, path)]
