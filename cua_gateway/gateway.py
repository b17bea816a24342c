"""The composition root: a loaded configuration in, a serving gateway out."""

from __future__ import annotations

import logging
import signal
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from functools import partial

import anyio
import uvicorn
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.types import ASGIApp

from cua_gateway.config import LoadedConfig
from cua_gateway.downstream.supervisor import Supervisor
from cua_gateway.errors import GatewayError
from cua_gateway.front.clients import ClientHub
from cua_gateway.front.events import MemoryEventStore
from cua_gateway.front.guard import Policy, is_loopback
from cua_gateway.front.http import build_app, mcp_routes, observability_routes
from cua_gateway.front.inputs import InputBridge
from cua_gateway.front.lane import Lane
from cua_gateway.front.lane_http import ExpressLane
from cua_gateway.front.mcp_server import Handlers, build_server
from cua_gateway.front.stdio import serve_stdio_client
from cua_gateway.metrics import Metrics
from cua_gateway.pipeline.router import Router
from cua_gateway.runtime.registry import Runtimes

logger = logging.getLogger(__name__)


class Gateway:
    """Everything one gateway runs, wired together: servers → router → the MCP server."""

    def __init__(self, loaded: LoadedConfig, runtimes: Runtimes) -> None:
        self.loaded = loaded
        self.supervisor = Supervisor(loaded, runtimes)
        self.router = Router(self.supervisor.pools)
        self.hub = ClientHub(self.router)
        for pool in self.supervisor.pools.values():
            pool.upstream = self.hub
        self.metrics = Metrics()
        self.metrics.watch(self.supervisor.status, self.hub.count)
        self.inputs = InputBridge()
        self.handlers = Handlers(self.router, self.hub, self.metrics, self.inputs)
        self.server = build_server(self.handlers, self.hub)
        self.lane = Lane(self.handlers, self.hub)

    @asynccontextmanager
    async def run(self) -> AsyncIterator[Gateway]:
        for name, reason in self.loaded.disabled.items():
            logger.warning("server %s is disabled: %s", name, reason)
        async with self.supervisor.run(), anyio.create_task_group() as tasks:
            tasks.start_soon(self.inputs.run)
            yield self
            tasks.cancel_scope.cancel()

    def http_app(
        self, policy: Policy, manager: StreamableHTTPSessionManager, events: MemoryEventStore
    ) -> ASGIApp:
        monitoring = self.loaded.config.monitoring
        lane = partial(ExpressLane, lane=self.lane, events=events)
        routes = [
            *mcp_routes(self.server, manager, lane),
            *observability_routes(
                self.supervisor.status, self.metrics, monitoring.prometheus_endpoint
            ),
        ]
        return build_app(routes, policy)

    def observability_app(self, policy: Policy) -> ASGIApp:
        path = self.loaded.config.monitoring.prometheus_endpoint
        return build_app(observability_routes(self.supervisor.status, self.metrics, path), policy)


def http_policy(loaded: LoadedConfig, host: str) -> Policy:
    """Off loopback, a bearer token is required unless `auth.allow_unauthenticated` says not."""
    auth = loaded.config.auth
    tokens = [t.get_secret_value() for t in auth.bearer_tokens]
    loopback = is_loopback(host)
    if not loopback and not tokens:
        if not auth.allow_unauthenticated:
            raise GatewayError(
                f"refusing to listen on {host} without authentication: set auth.bearer_tokens, "
                "or auth.allow_unauthenticated: true to accept anyone who can reach it"
            )
        logger.warning(
            "listening on %s WITHOUT authentication: anyone who can reach it may call", host
        )
    return Policy(tokens, loopback, tuple(auth.allowed_hosts), tuple(auth.allowed_origins))


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: the gateway decides how to stop."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
    # without it Nagle holds each response's second write for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise GatewayError(f"cannot listen on {host}:{port}: {e.strerror}") from e
    return sock


def _uvicorn(app: ASGIApp, shutdown_timeout: float) -> uvicorn.Server:
    config = uvicorn.Config(
        app, log_config=None, timeout_graceful_shutdown=int(shutdown_timeout), access_log=False
    )
    return _EmbeddedServer(config)


async def _on_signals(stop: Callable[[], None]) -> None:
    """Call `stop` at every SIGINT or SIGTERM."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            logger.info("received %s, shutting down", signal.Signals(signum).name)
            stop()


def _stop_server(server: uvicorn.Server) -> Callable[[], None]:
    def stop() -> None:
        if server.should_exit:  # a second signal: stop waiting for open connections
            server.force_exit = True
        server.should_exit = True

    return stop


async def serve_http(loaded: LoadedConfig, runtimes: Runtimes, host: str, port: int) -> None:
    """Serve MCP over streamable HTTP and SSE until SIGINT or SIGTERM; then stop everything."""
    policy = http_policy(loaded, host)
    sock = _listen(host, port)
    gateway = Gateway(loaded, runtimes)
    events = MemoryEventStore()
    manager = StreamableHTTPSessionManager(gateway.server, event_store=events)
    async with gateway.run(), manager.run():
        app = gateway.http_app(policy, manager, events)
        server = _uvicorn(app, loaded.config.gateway.shutdown_timeout)
        logger.info("serving MCP at http://%s:%d/mcp (and /sse)", host, port)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_on_signals, _stop_server(server))
            await server.serve(sockets=[sock])
            tasks.cancel_scope.cancel()
    logger.info("stopped")


async def serve_stdio(loaded: LoadedConfig, runtimes: Runtimes) -> None:
    """Serve one client over stdin/stdout (what Claude Desktop launches) until it goes or a
    signal comes; metrics and health go to `monitoring.metrics_port` when one is set."""
    gateway = Gateway(loaded, runtimes)
    async with gateway.run(), anyio.create_task_group() as tasks:
        tasks.start_soon(_on_signals, tasks.cancel_scope.cancel)
        port = loaded.config.monitoring.metrics_port
        if port is not None:
            tasks.start_soon(_serve_observability, gateway, port)
        await serve_stdio_client(gateway.server, gateway.lane)
        tasks.cancel_scope.cancel()
    logger.info("stopped")


async def _serve_observability(gateway: Gateway, port: int) -> None:
    host = "127.0.0.1"
    try:
        sock = _listen(host, port)
    except GatewayError as e:
        logger.warning("no metrics endpoint: %s", e)
        return
    logger.info(
        "metrics at http://%s:%d%s",
        host,
        port,
        gateway.loaded.config.monitoring.prometheus_endpoint,
    )
    app = gateway.observability_app(http_policy(gateway.loaded, host))
    await _uvicorn(app, 1.0).serve(sockets=[sock])
