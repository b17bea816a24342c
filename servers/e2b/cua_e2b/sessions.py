"""The open sandboxes, by id, whatever their backend: creation, use, idle expiry, closing.

A reaper task closes every sandbox left idle longer than its idle timeout (a sandbox in use is
never idle). Leaving `run()` closes them all.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio

from cua_e2b.backends import Backend, Sandbox, SandboxError
from cua_e2b.desktop import Desktop, Screen

logger = logging.getLogger(__name__)

CLOSE_TIMEOUT = 10.0  # seconds to close one sandbox (and, at exit, all of them)
ENDED_REMEMBERED = 1000  # closed sandbox ids kept to explain a later call


@dataclass(slots=True)
class Session:
    id: str
    sandbox: Sandbox
    idle_timeout: float
    created: float
    last_used: float
    busy: int = 0

    def deadline(self) -> float:
        return math.inf if self.busy else self.last_used + self.idle_timeout


class Sessions:
    def __init__(
        self,
        backend: Backend,
        idle_timeout: float,
        max_sessions: int,
        clock: Callable[[], float] = anyio.current_time,
    ) -> None:
        self._backend = backend
        self._idle_timeout = idle_timeout
        self._max = max_sessions
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        self._ended: OrderedDict[str, str] = OrderedDict()
        self._changed = anyio.Event()
        self._running = False

    @property
    def backend(self) -> str:
        return self._backend.name

    @asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        if self._running:
            raise RuntimeError("sessions are already running")
        self._running = True
        async with self._backend.run(), anyio.create_task_group() as tasks:
            tasks.start_soon(self._reap)
            try:
                yield
            finally:
                tasks.cancel_scope.cancel()
                with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT):
                    async with anyio.create_task_group() as closing:
                        for session in list(self._sessions.values()):
                            closing.start_soon(self._end, session, "the server stopped")

    async def create(self, idle_timeout: float | None = None) -> Session:
        return await self._open("sbx-", self._backend.create, idle_timeout)

    async def create_desktop(
        self, screen: Screen, idle_timeout: float | None = None, allow: Sequence[str] = ()
    ) -> Session:
        """A desktop session: a sandbox with a screen (its id works with the sandbox's tools)."""

        def create(sandbox_id: str) -> Awaitable[Sandbox]:
            return self._backend.create_desktop(sandbox_id, screen, allow)

        return await self._open("dsk-", create, idle_timeout)

    async def _open(
        self,
        prefix: str,
        create: Callable[[str], Awaitable[Sandbox]],
        idle_timeout: float | None,
    ) -> Session:
        if len(self._sessions) >= self._max:
            raise SandboxError(
                f"{self._max} sandboxes are open, the most allowed; close one with close_sandbox"
            )
        sandbox_id = prefix + secrets.token_hex(6)
        sandbox = await create(sandbox_id)
        now = self._clock()
        session = Session(sandbox_id, sandbox, idle_timeout or self._idle_timeout, now, now)
        self._sessions[sandbox_id] = session
        self._poke()
        logger.info("%s created (%s)", sandbox_id, self._backend.name)
        return session

    @asynccontextmanager
    async def use(self, sandbox_id: str) -> AsyncIterator[Sandbox]:
        """The sandbox, marked busy (never idle) while the context lasts."""
        session = self._get(sandbox_id)
        session.busy += 1
        try:
            yield session.sandbox
        finally:
            session.busy -= 1
            session.last_used = self._clock()
            self._poke()

    @asynccontextmanager
    async def use_desktop(self, sandbox_id: str) -> AsyncIterator[Desktop]:
        """The desktop, in use while the context lasts; SandboxError for a plain sandbox."""
        async with self.use(sandbox_id) as sandbox:
            if not isinstance(sandbox, Desktop):
                raise SandboxError(
                    f"{sandbox_id} is a sandbox without a screen; create_desktop makes one "
                    "with a screen"
                )
            yield sandbox

    async def close(self, sandbox_id: str) -> None:
        session = self._get(sandbox_id)
        await self._end(session, "closed")

    def describe(self) -> list[dict[str, object]]:
        now = self._clock()
        return [
            {
                "sandbox_id": s.id,
                "age_seconds": round(now - s.created, 1),
                "idle_seconds": 0.0 if s.busy else round(now - s.last_used, 1),
                "idle_timeout": s.idle_timeout,
                "busy": bool(s.busy),
            }
            for s in self._sessions.values()
        ]

    def _get(self, sandbox_id: str) -> Session:
        session = self._sessions.get(sandbox_id)
        if session is None:
            ended = self._ended.get(sandbox_id)
            raise SandboxError(
                f"sandbox {sandbox_id} is {ended}"
                if ended
                else f"no sandbox {sandbox_id}; create one with create_sandbox"
            )
        return session

    async def _end(self, session: Session, why: str) -> None:
        if self._sessions.pop(session.id, None) is None:
            return
        self._ended[session.id] = why
        while len(self._ended) > ENDED_REMEMBERED:
            self._ended.popitem(last=False)
        self._poke()
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT):
            try:
                await session.sandbox.close()
            except SandboxError:
                logger.exception("sandbox %s could not be closed", session.id)
        logger.info("sandbox %s %s", session.id, why)

    async def _reap(self) -> None:
        """Close idle sandboxes at their deadline; re-plan whenever a session changes."""
        while True:
            now = self._clock()
            for session in list(self._sessions.values()):
                if session.deadline() <= now:
                    await self._end(session, f"closed: it was idle for {session.idle_timeout:g} s")
            self._changed = anyio.Event()
            deadlines = [s.deadline() for s in self._sessions.values()]
            wait = min(deadlines, default=math.inf) - self._clock()
            with anyio.move_on_after(max(wait, 0)):
                await self._changed.wait()

    def _poke(self) -> None:
        self._changed.set()
