"""Every configured server at once: started concurrently, supervised, reported, and stopped."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio

from cua_gateway.config import LoadedConfig
from cua_gateway.downstream.catalog import CatalogStore
from cua_gateway.downstream.pool import ServerPool
from cua_gateway.errors import GatewayError
from cua_gateway.runtime.registry import Runtimes

logger = logging.getLogger(__name__)


class Supervisor:
    def __init__(self, loaded: LoadedConfig, runtimes: Runtimes) -> None:
        self._loaded = loaded
        self._runtimes = runtimes
        config = loaded.config
        catalog = CatalogStore(Path(config.gateway.state_dir) / "catalog")
        self.pools = {
            name: ServerPool(
                config.gateway.name,
                name,
                server,
                loaded.secrets.get(name, {}),
                runtimes.get(server.runtime),
                routing=config.gateway.routing,
                health_interval=config.gateway.health_check_interval,
                catalog=catalog,
            )
            for name, server in loaded.enabled.items()
        }
        self._started = False

    @asynccontextmanager
    async def run(self) -> AsyncIterator[Supervisor]:
        """Start every server in the background and yield at once; stop them all on exit."""
        if self._started:
            raise RuntimeError("a supervisor runs once")
        self._started = True
        try:
            if any(p.config.runtime == "docker" for p in self.pools.values()):
                await self._reap()
            async with anyio.create_task_group() as tasks:
                for pool in self.pools.values():
                    tasks.start_soon(pool.run)
                try:
                    yield self
                finally:
                    tasks.cancel_scope.cancel()
        finally:
            await self._runtimes.aclose()

    async def _reap(self) -> None:
        try:
            await self._runtimes.docker.reap_orphans()
        except GatewayError as e:
            logger.error("cannot check for containers left by an earlier run: %s", e)  # noqa: TRY400

    def pool(self, name: str) -> ServerPool:
        return self.pools[name]

    def status(self) -> dict[str, dict[str, Any]]:
        """Per server: state, readiness and replicas; disabled servers with their reason."""
        status: dict[str, dict[str, Any]] = {
            name: pool.status() for name, pool in self.pools.items()
        }
        for name, reason in self._loaded.disabled.items():
            runtime = (
                self._loaded.config.servers[name].runtime
                if name in self._loaded.config.servers
                else None
            )
            status[name] = {
                "state": "disabled",
                "ready": False,
                "runtime": runtime,
                "error": reason,
            }
        return status
