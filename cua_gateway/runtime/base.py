"""What every runtime offers: start one replica of a server, hand back its MCP message streams."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol

import anyio
from pydantic import SecretStr

from cua_gateway.config.server import ServerConfig
from cua_gateway.runtime._wire import ReadStream, WriteStream

EXIT_REPORT_WAIT = 1.0  # seconds a failure waits to learn whether (and how) the replica exited


@dataclass(frozen=True, slots=True)
class ReplicaSpec:
    """Everything a runtime needs to start replica `index` of server `server`."""

    gateway: str
    server: str
    index: int
    config: ServerConfig
    secrets: Mapping[str, SecretStr] = field(default_factory=dict)

    @property
    def environment(self) -> dict[str, str]:
        """The server's environment: configured variables, its secrets, and who it is."""
        env = dict(self.config.environment)
        env.update({k: v.get_secret_value() for k, v in self.secrets.items()})
        env.update({"CUA_SERVER": self.server, "CUA_REPLICA": str(self.index)})
        return env


@dataclass(slots=True)
class Exit:
    """How a replica ended by itself, once it has; `event` is set when it is known. Once the
    runtime is `stopping` it, its end is the gateway's doing and is not recorded."""

    event: anyio.Event = field(default_factory=anyio.Event)
    status: int | None = None
    reason: str = ""
    stopping: bool = False

    async def learn(self) -> None:
        """After a failure, give the replica's end a moment to be reported, if it ended itself."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(EXIT_REPORT_WAIT):
            await self.event.wait()

    def set(self, reason: str, status: int | None = None) -> None:
        if not self.event.is_set() and not self.stopping:
            self.reason, self.status = reason, status
            self.event.set()


@dataclass(slots=True)
class Link:
    """A started replica: the streams its MCP messages travel on, and how it ends."""

    read: ReadStream
    write: WriteStream
    exit: Exit
    where: str
    """Where it runs, for people: a container id, a pid, a URL."""
    stderr_tail: list[str] = field(default_factory=list)


class Runtime(Protocol):
    """Starts replicas. `prepare` runs once per server before its replicas start (e.g. build an
    image); `open` starts one replica and stops it when the context exits, whatever happened."""

    async def prepare(self, spec: ReplicaSpec) -> None: ...

    def open(self, spec: ReplicaSpec) -> AbstractAsyncContextManager[Link]: ...
