"""All replicas of one server: prepare once, run them, route each call to a healthy one.

Calls that are safe to repeat (reads, and tools annotated `readOnlyHint`/`idempotentHint` or listed
in `idempotent_tools`) are retried on another replica when a replica is lost or times out; no other
call is ever sent twice.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import anyio
from pydantic import SecretStr

from cua_gateway.config.models import RoutingConfig
from cua_gateway.config.server import ServerConfig
from cua_gateway.downstream.bridge import NoUpstream, Upstream
from cua_gateway.downstream.catalog import CatalogStore
from cua_gateway.downstream.circuit import CircuitBreaker
from cua_gateway.downstream.replica import Replica, ReplicaState
from cua_gateway.downstream.routing import ROUTERS
from cua_gateway.downstream.session import DownstreamSession, ProgressFn
from cua_gateway.errors import CallTimeout, GatewayError, ReplicaLost, Unavailable
from cua_gateway.runtime.base import ReplicaSpec, Runtime

logger = logging.getLogger(__name__)

CATALOG_TIMEOUT = 30.0  # seconds for a replica to list its tools when it becomes healthy
SAFE_METHODS = frozenset(
    {"ping", "tools/list", "resources/list", "resources/templates/list", "resources/read"}
    | {"prompts/list", "prompts/get", "completion/complete"}
)
_RETRYABLE = (ReplicaLost, CallTimeout, Unavailable)


class ServerPool:
    def __init__(
        self,
        gateway: str,
        name: str,
        config: ServerConfig,
        secrets: Mapping[str, SecretStr],
        runtime: Runtime,
        *,
        routing: RoutingConfig,
        health_interval: float,
        catalog: CatalogStore,
    ) -> None:
        self.name = name
        self.config = config
        self.state = "preparing"
        self.error: str | None = None
        self._prepared = anyio.Event()
        self._runtime = runtime
        self._catalog = catalog
        self._router = ROUTERS[routing.strategy]()
        self.timeout = config.timeout or routing.timeout
        self._retries = routing.retries if config.retries is None else config.retries
        restart = config.restart
        self._circuit = CircuitBreaker(restart.circuit_failures, restart.circuit_reset)
        self.replicas = [
            Replica(
                ReplicaSpec(gateway, name, index, config, secrets),
                runtime,
                health_interval=health_interval,
                owner=self,
            )
            for index in range(config.replicas)
        ]
        cached = catalog.load(name)
        self.tools: list[dict[str, Any]] = cached or []
        self.tools_live = False
        self._tools_seen = cached is not None
        self.tools_version = 0
        """Bumped whenever `tools` changes, so views of the catalog know to rebuild."""
        self.capabilities: Mapping[str, Any] = {}
        self.upstream: Upstream = NoUpstream()

    @property
    def ready(self) -> bool:
        return any(r.routable for r in self.replicas)

    @property
    def settled(self) -> bool:
        """Whether its tools are known (live or from the last run), or it will not have any."""
        if self._tools_seen or self.state == "failed":
            return True
        return all(r.state in (ReplicaState.FAILED, ReplicaState.STOPPED) for r in self.replicas)

    async def until_settled(self) -> None:
        """Wait until `settled` (callers bound the wait)."""
        while True:
            changes = [r.next_change() for r in self.replicas]
            if not self._prepared.is_set():
                changes.append(self._prepared)
            if self.settled:
                return
            await any_change(changes)

    @property
    def idle(self) -> bool:
        """An on-demand server with nothing running: it starts at its next call."""
        return all(r.state is ReplicaState.IDLE for r in self.replicas)

    async def run(self) -> None:
        """Prepare (build the image if needed), then run every replica until cancelled."""
        try:
            await self._runtime.prepare(self.replicas[0].spec)
        except GatewayError as e:
            self.state, self.error = "failed", str(e)
            for replica in self.replicas:
                replica.fail(str(e))
            logger.error("server %s cannot start: %s", self.name, e, extra={"server": self.name})  # noqa: TRY400
            return
        finally:
            self._prepared.set()
        self.state = "running"
        async with anyio.create_task_group() as tasks:
            for replica in self.replicas:
                tasks.start_soon(replica.run)

    async def replica_healthy(self, replica: Replica, session: DownstreamSession) -> None:
        self.capabilities = session.info.capabilities
        if not self.tools_live:
            await self._refresh_tools(session)

    async def _refresh_tools(self, session: DownstreamSession) -> None:
        """List the tools again; when they changed, save them and tell the clients."""
        tools = await session.list_tools(CATALOG_TIMEOUT)
        changed = tools != self.tools
        self.tools, self.tools_live, self._tools_seen = tools, True, True
        if changed:
            self.tools_version += 1
            self._catalog.save(self.name, tools)
            await self.upstream.notify(self.name, "notifications/tools/list_changed", {}, [])

    async def replica_notification(
        self, replica: Replica, method: str, params: dict[str, Any]
    ) -> None:
        if method == "notifications/tools/list_changed":  # passed on once the catalog has it
            if replica.session is not None:
                try:
                    await self._refresh_tools(replica.session)
                except GatewayError as e:
                    logger.warning("%s: cannot refresh its tools: %s", self.name, e)
            return
        await self.upstream.notify(self.name, method, params, replica.origins())

    async def replica_request(
        self, replica: Replica, method: str, params: dict[str, Any]
    ) -> dict[str, Any]:
        return await self.upstream.request(self.name, method, params, replica.origins())

    def is_safe(self, method: str, params: Mapping[str, Any] | None) -> bool:
        """Whether repeating this request cannot do harm."""
        if method in SAFE_METHODS:
            return True
        if method != "tools/call" or not params:
            return False
        tool = params.get("name")
        if tool in self.config.idempotent_tools:
            return True
        for known in self.tools:
            if known.get("name") == tool:
                hints = known.get("annotations") or {}
                return bool(hints.get("readOnlyHint") or hints.get("idempotentHint"))
        return False

    async def request(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
        on_progress: ProgressFn | None = None,
        origin: object | None = None,
    ) -> dict[str, Any]:
        """Send one request to a healthy replica, waiting (within the timeout) for one if needed.
        `origin` identifies the client call it serves, for what the server asks back."""
        budget = timeout or self.timeout
        attempts = 1 + (self._retries if self.is_safe(method, params) else 0)
        deadline = anyio.current_time() + budget
        for attempt in range(attempts):
            if not self._circuit.allows():
                retry_in = self._circuit.retry_in
                raise Unavailable(
                    self.name, f"circuit open after failures; retry in {retry_in:.0f}s"
                )
            with anyio.move_on_after(deadline - anyio.current_time()):
                replica = await self._choose()
            remaining = deadline - anyio.current_time()
            if remaining <= 0:
                raise Unavailable(
                    self.name, f"no healthy replica within {budget:g}s: {self._last_error()}"
                )
            try:
                result = await replica.request(
                    method, params, timeout=remaining, on_progress=on_progress, origin=origin
                )
            except _RETRYABLE as e:
                self._circuit.failure()
                if attempt + 1 < attempts and deadline > anyio.current_time():
                    logger.warning("retrying %s on another replica: %s", method, e)
                    continue
                raise
            self._circuit.success()
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    async def _choose(self) -> Replica:
        while True:
            changes = [r.next_change() for r in self.replicas]
            if not self._prepared.is_set():
                changes.append(self._prepared)
            healthy = [r for r in self.replicas if r.routable]
            if healthy:
                chosen: Replica = self._router.pick(healthy)
                return chosen
            for replica in self.replicas:
                if replica.state is ReplicaState.IDLE:
                    replica.want()
            if self.state == "failed" or all(
                r.state in (ReplicaState.FAILED, ReplicaState.STOPPED) for r in self.replicas
            ):
                raise Unavailable(self.name, self.error or self._last_error())
            await any_change(changes)

    def _last_error(self) -> str:
        errors = [r.last_error for r in self.replicas if r.last_error]
        return errors[-1] if errors else "no replica is running"

    def status(self) -> dict[str, Any]:
        state = self.state
        if state == "running":
            state = "ready" if self.ready else ("idle" if self.idle else "starting")
        return {
            "state": state,
            "ready": self.ready or self.idle,
            "runtime": self.config.runtime,
            "error": self.error,
            "tools": len(self.tools) if self._tools_seen else None,
            "tools_source": "live" if self.tools_live else ("cache" if self._tools_seen else None),
            "replicas": [r.status().as_dict() for r in self.replicas],
        }


async def any_change(events: list[anyio.Event]) -> None:
    """Wait until any of `events` is set."""

    async def wake(event: anyio.Event, scope: anyio.CancelScope) -> None:
        await event.wait()
        scope.cancel()

    async with anyio.create_task_group() as waiting:
        for event in events:
            waiting.start_soon(wake, event, waiting.cancel_scope)
