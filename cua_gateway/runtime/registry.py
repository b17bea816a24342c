"""The runtimes by name (`docker`, `process`, `remote`), each created when first needed."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import anyio

from cua_gateway.config.server import Runtime as RuntimeName
from cua_gateway.runtime.base import Runtime
from cua_gateway.runtime.docker import DockerRuntime
from cua_gateway.runtime.process import ProcessRuntime
from cua_gateway.runtime.remote import RemoteRuntime

logger = logging.getLogger(__name__)

CLEANUP_TIMEOUT = 30.0  # seconds for the last sweep of this instance's containers


class Runtimes:
    def __init__(self, gateway: str, instance: str, owner: str, inherited_env: Mapping[str, str]):
        self._gateway = gateway
        self._instance = instance
        self._owner = owner
        self._inherited_env = inherited_env
        self._docker: DockerRuntime | None = None
        self._process: ProcessRuntime | None = None
        self._remote: RemoteRuntime | None = None

    @property
    def docker(self) -> DockerRuntime:
        if self._docker is None:
            self._docker = DockerRuntime(self._gateway, self._instance, self._owner)
        return self._docker

    def get(self, name: RuntimeName) -> Runtime:
        if name == "docker":
            return self.docker
        if name == "process":
            self._process = self._process or ProcessRuntime(self._inherited_env)
            return self._process
        self._remote = self._remote or RemoteRuntime()
        return self._remote

    async def aclose(self) -> None:
        """Remove any container of this instance that escaped its replica's own teardown."""
        if self._docker is None:
            return
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_TIMEOUT):
            leftover = await self._docker.remove_all()
            if leftover:
                logger.warning("removed %d containers left at shutdown", len(leftover))
            await self._docker.aclose()
