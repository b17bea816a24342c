"""One replica of a server, supervised: started, health-checked by MCP ping, restarted with backoff.

starting ──initialize ok──▶ healthy ◀──ping ok──┐
   ▲                          │ ping fails       │
   │                          ▼                  │
restarting ◀──N pings fail── unhealthy ──────────┘
   ▲  │                       exit / lost call ──▶ restarting
   │  └──too many failed starts──▶ failed (circuit open) ──after a while──▶ restarting
   └── policy `never`, or a clean exit under `on-failure` ──▶ stopped

With `lifetime: on_demand`, a replica waits in `idle` until a call wants it, and goes back to
`idle` (stopped, not restarted) after `idle_timeout` without calls.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from typing import Any, Protocol

import anyio

from cua_gateway.downstream.circuit import CircuitBreaker
from cua_gateway.downstream.session import DownstreamSession, Handlers, ProgressFn, connect
from cua_gateway.errors import GatewayError, ReplicaLost, ServerError, Unavailable
from cua_gateway.runtime.base import Link, ReplicaSpec, Runtime

logger = logging.getLogger(__name__)


class ReplicaState(StrEnum):
    STARTING = "starting"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    RESTARTING = "restarting"
    FAILED = "failed"
    STOPPED = "stopped"
    IDLE = "idle"  # lifetime on_demand: not running; starts at the next call


@dataclass(frozen=True, slots=True)
class ReplicaStatus:
    index: int
    state: ReplicaState
    restarts: int
    in_flight: int
    where: str | None
    last_error: str | None
    since: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "state": str(self.state),
            "restarts": self.restarts,
            "in_flight": self.in_flight,
            "where": self.where,
            "last_error": self.last_error,
        }


class Owner(Protocol):
    """What a replica tells the pool that owns it."""

    async def replica_healthy(self, replica: Replica, session: DownstreamSession) -> None: ...

    async def replica_notification(
        self, replica: Replica, method: str, params: dict[str, Any]
    ) -> None: ...

    async def replica_request(
        self, replica: Replica, method: str, params: dict[str, Any]
    ) -> dict[str, Any]: ...


class Replica:
    def __init__(
        self, spec: ReplicaSpec, runtime: Runtime, *, health_interval: float, owner: Owner
    ) -> None:
        self.spec = spec
        self.index = spec.index
        weights = spec.config.weights
        self.weight = weights[spec.index] if weights else 1
        self.state = ReplicaState.STARTING
        self.restarts = 0
        self.in_flight = 0
        self.last_error: str | None = None
        self._since = time.time()
        self._runtime = runtime
        self._health_interval = spec.config.healthcheck.interval or health_interval
        self._owner = owner
        self._handlers = Handlers(
            partial(owner.replica_notification, self), partial(owner.replica_request, self)
        )
        self._origins: dict[int, object] = {}
        self._calls = itertools.count()
        restart = spec.config.restart
        self._circuit = CircuitBreaker(restart.circuit_failures, restart.circuit_reset)
        self._session: DownstreamSession | None = None
        self._link: Link | None = None
        self._changed = anyio.Event()
        self._on_demand = spec.config.lifetime.mode == "on_demand"
        self._wanted = anyio.Event()
        self._last_used = 0.0
        if self._on_demand:
            self.state = ReplicaState.IDLE

    @property
    def label(self) -> str:
        return f"{self.spec.server}#{self.index}"

    @property
    def session(self) -> DownstreamSession | None:
        return self._session

    @property
    def routable(self) -> bool:
        return self.state is ReplicaState.HEALTHY and self._session is not None

    def status(self) -> ReplicaStatus:
        where = self._link.where if self._link else None
        return ReplicaStatus(
            self.index,
            self.state,
            self.restarts,
            self.in_flight,
            where,
            self.last_error,
            self._since,
        )

    def next_change(self) -> anyio.Event:
        """Set at the next change of state or of calls in flight; take it before looking."""
        return self._changed

    def want(self) -> None:
        """Ask an idle (on-demand) replica to start."""
        self._wanted.set()

    def fail(self, reason: str) -> None:
        """Mark a replica that will not be started at all (its server could not be prepared)."""
        self._set(ReplicaState.FAILED, reason)

    def _set(self, state: ReplicaState, error: str | None = None) -> None:
        if error is not None:
            self.last_error = error
        if state is not self.state:
            logger.info(
                "%s is %s%s",
                self.label,
                state,
                f": {error}" if error and state is not ReplicaState.HEALTHY else "",
                extra={"server": self.spec.server, "replica": self.index, "state": str(state)},
            )
            self.state = state
            self._since = time.time()
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def run(self) -> None:
        """Keep the replica up until cancelled (or until its restart policy says to stop)."""
        restart = self.spec.config.restart
        attempt = 0
        while True:
            if self._on_demand and self.state is ReplicaState.IDLE:
                await self._wanted.wait()
                self._wanted = anyio.Event()
            if not self._circuit.allows():
                wait = self._circuit.retry_in
                self._set(
                    ReplicaState.FAILED, f"{self.last_error} (circuit open, retry in {wait:.0f}s)"
                )
                await anyio.sleep(wait)
            was_healthy, status, idled = await self._run_once()
            if idled:
                attempt = 0
                self._set(ReplicaState.IDLE)
                continue
            if was_healthy:
                self._circuit.success()
                attempt = 0
            else:
                self._circuit.failure()
            clean_exit = status == 0
            if restart.policy == "never" or (restart.policy == "on-failure" and clean_exit):
                final = ReplicaState.STOPPED if clean_exit else ReplicaState.FAILED
                self._set(final, self.last_error)
                return
            delay = min(restart.backoff_initial * 2**attempt, restart.backoff_max)
            attempt += 1
            self.restarts += 1
            self._set(ReplicaState.RESTARTING, self.last_error)
            await anyio.sleep(delay)

    async def _run_once(self) -> tuple[bool, int | None, bool]:
        """Start, serve until the replica ends: whether it became healthy, its exit status, and
        whether it was stopped for being idle."""
        self._set(ReplicaState.STARTING if self.restarts == 0 else ReplicaState.RESTARTING)
        healthy = idled = False
        link: Link | None = None
        start_timeout = self.spec.config.healthcheck.start_timeout
        try:
            async with AsyncExitStack() as stack:
                link = self._link = await stack.enter_async_context(self._runtime.open(self.spec))
                session = await stack.enter_async_context(
                    connect(
                        link,
                        self.spec.server,
                        self.index,
                        timeout=start_timeout,
                        handlers=self._handlers,
                    )
                )
                await self._owner.replica_healthy(self, session)
                self._session = session
                healthy = True
                self._last_used = anyio.current_time()
                self._set(ReplicaState.HEALTHY)
                reason = await self._watch(session, link)
                self._session = None
                if reason is None:
                    idled = True
                else:
                    self._set(ReplicaState.UNHEALTHY, reason)
        except Exception as e:  # whatever happened, supervision goes on
            error = _gateway_error(e)
            if error is None:
                logger.exception("%s failed unexpectedly", self.label)
            self._set(self.state, _explain(str(error or f"{type(e).__name__}: {e}"), link))
        finally:
            self._session = None
        return healthy, link.exit.status if link else None, idled

    async def _watch(self, session: DownstreamSession, link: Link) -> str | None:
        """Ping every interval; returns why the replica must be restarted (None: it is idle)."""
        check = self.spec.config.healthcheck
        idle_timeout = self.spec.config.lifetime.idle_timeout
        failures = 0
        while True:
            wait = self._health_interval
            if self._on_demand:
                wait = min(wait, max(self._last_used + idle_timeout - anyio.current_time(), 0))
            with anyio.move_on_after(wait):
                await link.exit.event.wait()
            if link.exit.event.is_set():
                return _explain(link.exit.reason, link)
            idle_for = anyio.current_time() - self._last_used
            if self._on_demand and self.in_flight == 0 and idle_for >= idle_timeout:
                logger.info("%s is idle; stopping it", self.label)
                return None
            try:
                await session.ping(check.timeout)
            except ServerError as e:
                failures += 1
                self._set(ReplicaState.UNHEALTHY, f"ping failed ({failures}/{check.failures}): {e}")
                if failures >= check.failures:
                    return f"{failures} pings failed in a row"
            else:
                if failures:
                    self._set(ReplicaState.HEALTHY)
                failures = 0

    async def request(
        self,
        method: str,
        params: Mapping[str, Any] | None,
        *,
        timeout: float,
        on_progress: ProgressFn | None = None,
        origin: object | None = None,
    ) -> dict[str, Any]:
        """Send a request; `origin` identifies the client call it serves (see `origins`)."""
        session, link = self._session, self._link
        if session is None or link is None or not self.routable:
            raise Unavailable(self.spec.server, f"{self.state}", replica=self.index)
        self.in_flight += 1
        self._last_used = anyio.current_time()
        call = next(self._calls)
        if origin is not None:
            self._origins[call] = origin
        self._notify()
        try:
            return await session.request(method, params, timeout=timeout, on_progress=on_progress)
        except ReplicaLost as e:
            await link.exit.learn()
            link.exit.set("the connection was lost during a call")
            raise ReplicaLost(
                self.spec.server, f"lost during {method}: {link.exit.reason}", replica=self.index
            ) from e
        finally:
            self.in_flight -= 1
            self._origins.pop(call, None)
            self._last_used = anyio.current_time()
            self._notify()

    def origins(self) -> list[object]:
        """The distinct origins of the calls now in flight here, oldest first."""
        distinct: list[object] = []
        for origin in self._origins.values():
            if all(origin is not seen for seen in distinct):
                distinct.append(origin)
        return distinct


def _gateway_error(error: BaseException) -> GatewayError | None:
    """The gateway's own error in `error`, also when task groups wrapped it in exception groups."""
    if isinstance(error, GatewayError):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            if found := _gateway_error(inner):
                return found
    return None


def _explain(message: str, link: Link | None) -> str:
    """Add what the replica said on stderr before it went, when it said anything."""
    if link is None:
        return message
    if link.exit.event.is_set() and link.exit.reason not in message:
        message = f"{message}; {link.exit.reason}"
    if link.stderr_tail:
        message += " — stderr: " + " | ".join(link.stderr_tail[-3:])
    return message
