"""The composition root: a loaded configuration in, a serving gateway out."""

from __future__ import annotations

import logging
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import uvicorn
from starlette.applications import Starlette

from cua_gateway.config import LoadedConfig
from cua_gateway.downstream.supervisor import Supervisor
from cua_gateway.errors import GatewayError
from cua_gateway.front.health import health_routes
from cua_gateway.runtime.registry import Runtimes

logger = logging.getLogger(__name__)


def build_app(supervisor: Supervisor) -> Starlette:
    return Starlette(routes=health_routes(supervisor.status))


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: the gateway decides how to stop."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _stop_on_signal(server: uvicorn.Server) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if server.should_exit:  # a second signal: stop waiting for open connections
                server.force_exit = True
            logger.info("received %s, shutting down", signal.Signals(signum).name)
            server.should_exit = True


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise GatewayError(f"cannot listen on {host}:{port}: {e.strerror}") from e
    return sock


async def serve_http(loaded: LoadedConfig, runtimes: Runtimes, host: str, port: int) -> None:
    """Start the servers, serve HTTP until SIGINT or SIGTERM, then stop all in bounded time."""
    for name, reason in loaded.disabled.items():
        logger.warning("server %s is disabled: %s", name, reason)
    sock = _listen(host, port)
    supervisor = Supervisor(loaded, runtimes)
    async with supervisor.run():
        config = uvicorn.Config(
            build_app(supervisor),
            log_config=None,
            timeout_graceful_shutdown=int(loaded.config.gateway.shutdown_timeout),
        )
        server = _EmbeddedServer(config)
        logger.info("listening on http://%s:%d", host, port)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_stop_on_signal, server)
            await server.serve(sockets=[sock])
            tasks.cancel_scope.cancel()
    logger.info("stopped")
