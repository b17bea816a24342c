"""Egress for a desktop whose container has no network: an HTTP proxy on 127.0.0.1:3128 inside
it that reaches exactly the hosts of an allowlist, and nothing else.

The container never gets a network. A small stdlib-only program (`_egress_agent.AGENT`) runs in
it for as long as the desktop, in one `docker exec` as the desktop's user: it listens on
127.0.0.1:3128 and carries every connection it accepts over the exec's stdin and stdout, in the
frames of `_egress_tunnel.py`. Here, on the host, `Egress` demultiplexes them and serves each
connection as an HTTP proxy client (`_egress_proxy.py`): the target is checked against the
desktop's `EgressPolicy` (`allowlist.py`), by name and by every address it resolves to, and
connected to from here; anything else gets `403 Forbidden` with a one-line reason.

Note that the proxy connects out from the gateway's host: `127.0.0.1` on the allowlist means
this host's loopback, not the desktop's.

A desktop with egress is created with `PROXY_ENV` in its environment; chromium ignores that and
takes `CHROMIUM_FLAGS`. `async with egress.run():` runs one where the caller's task can hold it;
`await tasks.start(egress.serve)` runs it in a long-lived task group until `egress.close()`.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from functools import partial
from typing import cast

import anyio
import anyio.abc
import docker
import docker.errors
import requests

from cua_e2b.backends import SandboxError
from cua_e2b.desktop._egress_agent import AGENT
from cua_e2b.desktop._egress_proxy import ANSWER_TIMEOUT, proxy
from cua_e2b.desktop._egress_tunnel import (
    CHUNK,
    CLOSE,
    CREDIT,
    DATA,
    EOF,
    HEADER,
    HELLO,
    OPEN,
    READY,
    WINDOW,
    Channel,
    ProtocolError,
)
from cua_e2b.desktop.allowlist import EgressPolicy

__all__ = ["CHROMIUM_FLAGS", "PROXY_ENV", "PROXY_PORT", "WINDOW", "Egress", "EgressError"]

logger = logging.getLogger(__name__)

PROXY_PORT = 3128  # where the proxy listens inside the desktop, on 127.0.0.1
PROXY_URL = f"http://127.0.0.1:{PROXY_PORT}"
NO_PROXY = "localhost,127.0.0.1"
PROXY_ENV = {
    "http_proxy": PROXY_URL,
    "https_proxy": PROXY_URL,
    "HTTP_PROXY": PROXY_URL,
    "HTTPS_PROXY": PROXY_URL,
    "no_proxy": NO_PROXY,
    "NO_PROXY": NO_PROXY,
}
"""The environment a desktop with egress is created with (chromium takes `CHROMIUM_FLAGS`)."""
CHROMIUM_FLAGS = (f"--proxy-server={PROXY_URL}",)

READY_TIMEOUT = 10.0  # seconds for the agent to listen once started
CLOSE_TIMEOUT = 5.0  # seconds to close the tunnel at the end and see the agent exit
STOP_TIMEOUT = CLOSE_TIMEOUT + 1.0  # seconds close() waits for serve() to end
EXIT_POLL = 0.02  # seconds between looks at whether the agent has exited
MAX_CONNECTIONS = 128  # connections open at once; more are dropped
ERRORS_KEPT = 4096  # bytes of the agent's stderr kept to explain a failure

BROKEN = (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)  # a tunnel gone


class EgressError(SandboxError):
    """The egress proxy of a desktop cannot start (or broke)."""

    def __init__(self, container_id: str, message: str) -> None:
        self.container_id = container_id
        super().__init__(message)


class Egress:
    """The egress proxy of one desktop: `async with Egress(api, container, policy).run():`
    (or `serve()` until `close()`). Inside, programs in the container reach the allowlisted
    hosts through `PROXY_URL`. The agent runs as `user` (default: the container's own)."""

    def __init__(
        self, api: docker.APIClient, container: str, policy: EgressPolicy, *, user: str = ""
    ) -> None:
        self._api = api
        self._container = container
        self._name = container[:12]
        self._policy = policy
        self._user = user
        self._stream: anyio.abc.SocketStream | None = None
        self._sending = anyio.Lock()
        self._channels: dict[int, Channel] = {}
        self._last = 0  # the highest connection id opened
        self._ready = anyio.Event()  # the agent listens, or has ended
        self._listening = False
        self._ended = False
        self._closing = False
        self._errors = bytearray()
        self._started = False
        self._stop = anyio.Event()  # close() was called
        self._stopped = anyio.Event()  # serve() has ended

    @property
    def connections(self) -> int:
        """Connections open now."""
        return len(self._channels)

    @property
    def alive(self) -> bool:
        """Whether the tunnel into the desktop still stands."""
        return self._listening and not self._ended

    @asynccontextmanager
    async def run(self) -> AsyncIterator[Egress]:
        """Start the agent and return once it listens; leaving stops it and cuts its
        connections. EgressError when it cannot start."""
        if self._started:
            raise RuntimeError("this egress proxy has already run: make a new one")
        self._started = True
        started: list[tuple[str, socket.socket]] = []  # here, a cancellation cannot leak it
        try:
            start = partial(_start_agent, self._api, self._container, self._user)
            await anyio.to_thread.run_sync(lambda: started.append(start()))
            exec_id, sock = started[0]
            stream = await anyio.abc.SocketStream.from_socket(sock)
        except BaseException:
            for _, sock in started:
                sock.close()
            raise
        self._stream = stream
        failure: Exception | None = None  # not wrapped in the task group's ExceptionGroup
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._read, stream)
                try:
                    await self._handshake()
                    logger.info(
                        "egress %s: listening on %s for %d allowlist entries",
                        self._name,
                        PROXY_URL,
                        len(self._policy.rules),
                    )
                    yield self
                except Exception as e:  # raised below, outside the task group
                    failure = e
                finally:
                    self._closing = True
                    tasks.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT):
                await stream.aclose()  # its stdin ends: the agent exits, and frees the port
                while await anyio.to_thread.run_sync(self._agent_running, exec_id):  # noqa: ASYNC110 (Docker tells no event)
                    await anyio.sleep(EXIT_POLL)
        if failure is not None:
            raise failure

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run until `close()`, in a task group that outlives the caller:
        `await tasks.start(egress.serve)` returns once the agent listens, and raises
        EgressError when it cannot start. A failure after that is logged, not raised."""
        started = False
        try:
            async with self.run():
                task_status.started()
                started = True
                await self._stop.wait()
        except Exception:
            if not started:
                raise
            logger.exception("egress %s: failed, the desktop has no network now", self._name)
        finally:
            self._stopped.set()

    async def close(self) -> None:
        """Stop what `serve()` runs: the agent exits and its connections are cut. Returns once
        it has, or after STOP_TIMEOUT; safe to call more than once, or before `serve()`."""
        self._stop.set()
        if not self._started:
            return
        with anyio.CancelScope(shield=True), anyio.move_on_after(STOP_TIMEOUT):
            await self._stopped.wait()

    def _agent_running(self, exec_id: str) -> bool:
        try:
            return bool(self._api.exec_inspect(exec_id).get("Running"))
        except (docker.errors.DockerException, requests.RequestException):
            return False  # the container is gone, and the agent with it

    async def _handshake(self) -> None:
        with suppress(*BROKEN):  # the agent is gone already: its error is read below
            await self._send(HELLO, 0)
        with anyio.move_on_after(READY_TIMEOUT):
            await self._ready.wait()
        if not self._listening:
            lines = self._errors.decode(errors="replace").strip().splitlines()
            detail = lines[-1] if lines else "it did not answer"
            raise EgressError(
                self._container,
                f"the egress proxy did not start in desktop {self._name} within "
                f"{READY_TIMEOUT:g} s: {detail}",
            )

    async def _send(self, kind: int, cid: int, payload: bytes = b"") -> None:
        stream = self._stream
        if stream is None:
            raise anyio.ClosedResourceError
        async with self._sending:
            await stream.send(HEADER.pack(kind, cid, len(payload)) + payload)

    async def _read(self, stream: anyio.abc.SocketStream) -> None:
        """Demultiplex the exec's output until it ends, serving each connection in a task."""
        try:
            async with anyio.create_task_group() as connections:
                try:
                    await self._demultiplex(stream, connections)
                finally:
                    connections.cancel_scope.cancel()
        except ProtocolError as e:
            message = "egress %s: the desktop broke the tunnel's protocol: %s"
            logger.error(message, self._name, e)  # noqa: TRY400 (a traceback would tell nothing)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as e:
            if not self._closing:
                logger.warning("egress %s: lost the tunnel: %s", self._name, e)
        finally:
            self._ended = True
            self._ready.set()
            if not self._closing and self._listening:
                errors = self._errors.decode(errors="replace").strip()
                logger.warning(
                    "egress %s: the proxy in the desktop ended, it has no network now%s",
                    self._name,
                    f": {errors.splitlines()[-1]}" if errors else "",
                )

    async def _demultiplex(
        self, stream: anyio.abc.SocketStream, connections: anyio.abc.TaskGroup
    ) -> None:
        docker_frames = bytearray()
        frames = bytearray()
        async for chunk in stream:
            docker_frames += chunk
            while len(docker_frames) >= 8:
                size = int.from_bytes(docker_frames[4:8], "big")
                if len(docker_frames) < 8 + size:
                    break
                if docker_frames[0] == 1:
                    frames += docker_frames[8 : 8 + size]
                else:
                    room = max(0, ERRORS_KEPT - len(self._errors))
                    self._errors += docker_frames[8 : 8 + min(size, room)]
                del docker_frames[: 8 + size]
            while len(frames) >= HEADER.size:
                kind, cid, size = HEADER.unpack_from(frames)
                if size > CHUNK:
                    raise ProtocolError(f"a frame of {size} bytes")
                end = HEADER.size + size
                if len(frames) < end:
                    break
                payload = bytes(frames[HEADER.size : end])
                del frames[:end]
                await self._dispatch(kind, cid, payload, connections)

    async def _dispatch(
        self, kind: int, cid: int, payload: bytes, connections: anyio.abc.TaskGroup
    ) -> None:
        if kind == READY:
            self._listening = True
            self._ready.set()
        elif kind == OPEN:
            if cid <= self._last:
                raise ProtocolError(f"connection {cid} opened again")
            self._last = cid
            if len(self._channels) >= MAX_CONNECTIONS:
                logger.warning(
                    "egress %s: %d connections are open already: one more dropped",
                    self._name,
                    MAX_CONNECTIONS,
                )
                await self._send(CLOSE, cid)
                return
            channel = self._channels[cid] = Channel(cid, self._send)
            connections.start_soon(self._serve, channel)
        elif kind in (DATA, EOF, CREDIT, CLOSE):
            found = self._channels.get(cid)
            if found is None:
                return  # a connection already forgotten here
            if kind == DATA:
                found.feed(payload)
            elif kind == EOF:
                found.feed_eof()
            elif kind == CREDIT:
                if len(payload) != 4:
                    raise ProtocolError("a credit that is not 4 bytes")
                found.grant(int.from_bytes(payload, "big"))
            else:
                found.drop()
        else:
            raise ProtocolError(f"a frame of unknown kind {kind}")

    async def _serve(self, channel: Channel) -> None:
        try:
            with channel.scope:
                await proxy(channel, self._policy, self._name)
        except BROKEN as e:  # the tunnel is gone: _read tells
            logger.debug("egress %s: connection %d cut: %s", self._name, channel.id, e)
        except Exception:  # one connection's failure must not end the proxy
            logger.exception("egress %s: a connection failed", self._name)
        finally:
            del self._channels[channel.id]
            if not (channel.dropped or channel.finished or self._closing or self._ended):
                shielded = anyio.CancelScope(shield=True)
                with shielded, anyio.move_on_after(ANSWER_TIMEOUT), suppress(*BROKEN):
                    await self._send(CLOSE, channel.id)


def _start_agent(api: docker.APIClient, container: str, user: str) -> tuple[str, socket.socket]:
    """Start the agent in the container (blocking): its exec's id and connection."""
    argv = ["python3", "-I", "-S", "-c", AGENT, str(PROXY_PORT), str(WINDOW), str(CHUNK)]
    try:
        exec_id = api.exec_create(container, argv, stdin=True, tty=False, user=user)["Id"]
        hijacked = api.exec_start(exec_id, socket=True)
    except docker.errors.NotFound as e:
        raise EgressError(container, "the desktop's container is gone") from e
    except (docker.errors.DockerException, requests.RequestException) as e:
        raise EgressError(
            container, f"cannot start the egress proxy: docker exec failed: {e}"
        ) from e
    raw = cast(socket.socket, getattr(hijacked, "_sock", hijacked))
    try:
        return (
            exec_id,
            raw.dup(),
        )  # ours alone: the SDK's objects may close theirs whenever they like
    finally:
        hijacked.close()
        raw.close()
