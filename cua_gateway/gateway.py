"""The composition root: a loaded configuration in, a serving gateway out."""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import anyio
import uvicorn
from starlette.applications import Starlette

from cua_gateway.config import LoadedConfig
from cua_gateway.front.health import health_routes

logger = logging.getLogger(__name__)


def configured_status(loaded: LoadedConfig) -> dict[str, Mapping[str, Any]]:
    """Each server's state as far as the configuration tells: enabled, or disabled and why."""
    status: dict[str, Mapping[str, Any]] = {}
    for name, server in loaded.config.servers.items():
        reason = loaded.disabled.get(name)
        state = "disabled" if reason else "configured"
        status[name] = {"state": state, "ready": False, "runtime": server.runtime, "reason": reason}
    return status


def build_app(loaded: LoadedConfig) -> Starlette:
    return Starlette(routes=health_routes(lambda: configured_status(loaded)))


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


async def serve_http(loaded: LoadedConfig, host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM, then shut down gracefully within `shutdown_timeout`."""
    for name, reason in loaded.disabled.items():
        logger.warning("server %s is disabled: %s", name, reason)
    config = uvicorn.Config(
        build_app(loaded),
        host=host,
        port=port,
        log_config=None,
        timeout_graceful_shutdown=int(loaded.config.gateway.shutdown_timeout),
    )
    server = _EmbeddedServer(config)
    logger.info("listening on http://%s:%d", host, port)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(_stop_on_signal, server)
        await server.serve()
        tasks.cancel_scope.cancel()
