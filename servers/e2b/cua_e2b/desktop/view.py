"""The live view of a desktop: a link a person opens in a browser to watch and take over the
screen through noVNC, although the desktop's container has no network.

Each view listens on a host port of its own, taken from a range (the server runs on the host's
network). It hands every authorised connection to the desktop's noVNC (websockify on
127.0.0.1:6080 inside the container) through a `docker exec` of a small relay program, one exec
per connection: the exec's stdin carries the browser's bytes in, raw; its stdout carries noVNC's
bytes out, multiplexed by Docker in frames (an 8-byte header: stream, 0, 0, 0, size).

Access needs the view's token. A page request with the token in its link (`?token=`) is answered
with a redirect to the same link without it and a cookie holding it, so that noVNC's own asset
loads and its websocket, which know nothing of the token, are let through too. Anything else
gets 403 before a byte reaches the container. Only a connection's first request is checked:
what follows on it (keep-alive, websocket frames) is relayed as it comes. Closing a view stops
its listener and cuts its connections: the link stops working, and its port goes back to the
range.
"""

from __future__ import annotations

import errno
import hmac
import logging
import secrets
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import cast
from urllib.parse import unquote_plus, urlencode

import anyio
import anyio.abc
import docker
import docker.errors
import requests

from cua_e2b.backends import SandboxError

logger = logging.getLogger(__name__)

NOVNC_PORT = 6080  # where noVNC (websockify) listens inside the desktop's container
HEAD_LIMIT = 16 * 1024  # bytes of a request head, cookies included
HEAD_TIMEOUT = 10.0  # seconds for a client to send its request head
ANSWER_TIMEOUT = 5.0  # seconds for a client to take one of our own short answers
CONNECT_WAIT = 5.0  # seconds the relay keeps trying to reach noVNC (it may still be starting)
LINGER = 30.0  # seconds a connection stays open for the rest of an answer once the client is done
CLOSE_TIMEOUT = 5.0  # seconds to close a view (its listener closes at once)
ACCEPT_BACKOFF = 0.1  # seconds before accepting again after a failed accept (e.g. out of files)
MAX_CONNECTIONS = 32  # relayed connections one view keeps open at once (each is an exec)
CHUNK = 64 * 1024  # bytes read at a time
ERRORS_KEPT = 1024  # bytes of the relay's stderr kept to explain a failure
TOKEN_BYTES = 32

# Runs in the container: `python3 -c RELAY PORT CONNECT_WAIT LINGER`. It waits for the first
# bytes before connecting, so nothing is written to the exec's stream before the host reads it.
RELAY = """\
import os, socket, sys, threading, time
port, wait, linger = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
data = os.read(0, 65536)
deadline = time.monotonic() + wait
while data:
    try:
        s = socket.create_connection(("127.0.0.1", port), 2)
        break
    except OSError as e:
        if time.monotonic() > deadline:
            sys.exit(f"nothing answers on 127.0.0.1:{port} in the desktop: {e}")
        time.sleep(0.1)
else:
    sys.exit()
s.settimeout(None)
def up(data):
    try:
        while data:
            s.sendall(data)
            data = os.read(0, 65536)
        s.shutdown(socket.SHUT_WR)
    except OSError:
        os._exit(0)
    time.sleep(linger)
    os._exit(0)
threading.Thread(target=up, args=(data,), daemon=True).start()
try:
    while data := s.recv(65536):
        view = memoryview(data)
        while view:
            view = view[os.write(1, view):]
except OSError:
    pass
"""

FORBIDDEN = b"Forbidden: this live view needs the link with its token (it may have closed).\n"
REASONS = {
    302: "Found",
    400: "Bad Request",
    403: "Forbidden",
    431: "Request Header Fields Too Large",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


class PortsExhausted(SandboxError):
    """Every port of the live views' range is taken."""

    def __init__(self, host: str, ports: range) -> None:
        self.host = host
        self.ports = ports
        super().__init__(
            f"no free port for a live view: all {len(ports)} ports of {host}:"
            f"{ports.start}-{ports.stop - 1} are in use (close a desktop, or widen the range)"
        )


class LiveViews:
    """Hands out live views, each on a free port of `ports` on `host`. Their links name
    `public_host` (default: `host`), the address a browser reaches this machine at."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        ports: range = range(6100, 6200),
        public_host: str | None = None,
    ) -> None:
        if not ports or ports.step != 1 or not 0 < ports.start <= ports.stop - 1 <= 65535:
            raise ValueError(f"the live views' ports must be a range within 1-65535 (got {ports})")
        self._host = host
        self._ports = ports
        wildcard = host in ("", "0.0.0.0", "::")  # noqa: S104
        self._public_host = public_host or ("127.0.0.1" if wildcard else host)
        self._taken: set[int] = set()
        self._next = 0  # index in `ports` to try first: ports are handed out in turn
        self._tasks: anyio.abc.TaskGroup | None = None
        self._running = False

    @asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        """Serve views while inside; leaving closes them all."""
        if self._running:
            raise RuntimeError("the live views are already running")
        self._running = True
        async with anyio.create_task_group() as tasks:
            self._tasks = tasks
            try:
                yield
            finally:
                self._tasks = None
                tasks.cancel_scope.cancel()

    async def open(
        self,
        api: docker.APIClient,
        container: str,
        *,
        port: int = NOVNC_PORT,
        user: str = "",
    ) -> View:
        """A new live view of noVNC on `port` inside `container` (relayed as `user`, default:
        the container's), with a token of its own."""
        tasks = self._tasks
        if tasks is None:
            raise RuntimeError("the live views are not running")
        listener, host_port = await self._listen()
        view = View(
            url_host=self._public_host,
            port=host_port,
            listener=listener,
            connect=partial(_start_relay, api, container, port, user),
            release=self._taken.discard,
        )
        try:
            await tasks.start(view.serve)
        except BaseException:
            self._taken.discard(host_port)
            with anyio.CancelScope(shield=True):
                await listener.aclose()
            raise
        logger.info("live view of container %s on port %d", container[:12], host_port)
        return view

    async def _listen(self) -> tuple[anyio.abc.SocketListener, int]:
        """A listener on the next free port of the range, in turn (a port just given back is
        the last to be handed out again, so a stale browser tab finds nothing there)."""
        try:
            found = await anyio.getaddrinfo(
                self._host, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        except OSError as e:
            raise SandboxError(f"cannot listen on {self._host} for live views: {e}") from e
        family, address = found[0][0], str(found[0][4][0])
        count = len(self._ports)
        for step in range(count):
            index = (self._next + step) % count
            port = self._ports[index]
            if port in self._taken:
                continue
            try:
                sock = socket.create_server((address, port), family=family)
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    logger.debug("live views: port %d is busy on the host, skipped", port)
                    continue
                raise SandboxError(
                    f"cannot listen on {self._host}:{port} for a live view: {e}"
                ) from e
            self._taken.add(port)
            self._next = (index + 1) % count
            return await anyio.abc.SocketListener.from_socket(sock), port
        raise PortsExhausted(self._host, self._ports)


class View:
    """One desktop's live view: `url` opens it in a browser until `close()`."""

    def __init__(
        self,
        *,
        url_host: str,
        port: int,
        listener: anyio.abc.SocketListener,
        connect: Callable[[], socket.socket],
        release: Callable[[int], None],
    ) -> None:
        self._port = port
        self._listener = listener
        self._connect = connect
        self._release = release
        self._token = secrets.token_urlsafe(TOKEN_BYTES)
        self._cookie = f"cua_view_{secrets.token_hex(8)}"  # cookies ignore ports: one per view
        host = f"[{url_host}]" if ":" in url_host else url_host
        query = urlencode(
            {"autoconnect": "true", "resize": "scale", "path": "websockify", "token": self._token}
        )
        self._url = f"http://{host}:{port}/vnc.html?{query}"
        self._scope = anyio.CancelScope()
        self._closed = anyio.Event()
        self._connections = 0

    @property
    def url(self) -> str:
        """The link to open, token included."""
        return self._url

    @property
    def port(self) -> int:
        return self._port

    async def close(self) -> None:
        """Stop listening and cut the open connections."""
        self._scope.cancel()
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT):
            await self._closed.wait()

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Accept connections until closed (run by LiveViews)."""
        try:
            with self._scope:
                async with anyio.create_task_group() as connections:
                    try:
                        async with self._listener:
                            task_status.started()
                            await self._accept(connections)
                    finally:
                        self._release(self._port)
        finally:
            self._closed.set()
            logger.info("live view on port %d closed", self._port)

    async def _accept(self, connections: anyio.abc.TaskGroup) -> None:
        while True:
            try:
                client = await self._listener.accept()
            except OSError as e:
                logger.warning("live view on port %d: cannot accept: %s", self._port, e)
                await anyio.sleep(ACCEPT_BACKOFF)
                continue
            connections.start_soon(self._guarded, client)

    async def _guarded(self, client: anyio.abc.SocketStream) -> None:
        try:
            async with client:
                await self._handle(client)
        except Exception:  # one connection's failure must not end the view
            logger.exception("live view on port %d: a connection failed", self._port)

    async def _handle(self, client: anyio.abc.SocketStream) -> None:
        try:
            with anyio.fail_after(HEAD_TIMEOUT):
                head, rest = await _read_head(client)
        except _HeadTooLarge:
            await _answer(client, 431, b"The request head is too large.\n")
            return
        except (TimeoutError, anyio.EndOfStream, anyio.BrokenResourceError):
            return
        request = _Request.parse(head)
        if request is None:
            await _answer(client, 400, b"Bad request.\n")
            return
        by_link = self._valid(request.token)
        if not (by_link or self._valid(request.cookie(self._cookie))):
            logger.info("live view on port %d: refused a request without its token", self._port)
            await _answer(client, 403, FORBIDDEN)
            return
        if request.token is not None and request.is_page:
            cookie = f"{self._cookie}={self._token}; Path=/; HttpOnly; SameSite=Lax"
            # the same link without its token ("//host" would leave the site: one slash only)
            location = "/" + request.target.lstrip("/\\")
            await _answer(client, 302, b"", [("Location", location), ("Set-Cookie", cookie)])
            return
        if self._connections >= MAX_CONNECTIONS:
            await _answer(client, 503, b"Too many connections to this live view.\n")
            return
        self._connections += 1
        try:
            await self._relay(client, request.head + rest)
        finally:
            self._connections -= 1

    def _valid(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token.encode(), self._token.encode())

    async def _relay(self, client: anyio.abc.SocketStream, first: bytes) -> None:
        started: list[socket.socket] = []  # kept here so that a cancellation cannot leak it
        try:
            await anyio.to_thread.run_sync(lambda: started.append(self._connect()))
            upstream = await anyio.abc.SocketStream.from_socket(started[0])
        except SandboxError as e:
            logger.warning("live view on port %d: %s", self._port, e)
            await _answer(client, 502, f"The desktop cannot be reached: {e}\n".encode())
            return
        except BaseException:
            for sock in started:
                sock.close()
            raise
        failure = None  # stays None when the pumps are cut short
        async with upstream, anyio.create_task_group() as pumps:
            pumps.start_soon(_upward, client, upstream, first, pumps.cancel_scope)
            failure = await _downward(upstream, client)
            pumps.cancel_scope.cancel()
        if failure is not None:
            logger.warning("live view on port %d: the relay ended: %s", self._port, failure)
            await _answer(
                client, 502, f"The desktop's live view did not answer: {failure}\n".encode()
            )


@dataclass(frozen=True, slots=True)
class _Request:
    head: bytes  # the head to relay: the request line without the token
    target: str  # the request target without the token
    token: str | None  # the token in the query string
    is_page: bool  # a GET or HEAD that is not a websocket upgrade
    cookies: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, head: bytes) -> _Request | None:
        line, _, fields = head.partition(b"\r\n")
        parts = line.decode("latin-1").split(" ")
        if len(parts) != 3 or not parts[1].startswith("/") or not parts[2].startswith("HTTP/1."):
            return None
        method, target, version = parts
        headers: list[tuple[str, str]] = []
        for field in fields.decode("latin-1").split("\r\n"):
            if field:
                name, colon, value = field.partition(":")
                if not colon:
                    return None
                headers.append((name.strip().lower(), value.strip()))
        path, _, query = target.partition("?")
        items = [item.partition("=") for item in query.split("&") if item]
        tokens = [unquote_plus(value) for name, _, value in items if unquote_plus(name) == "token"]
        kept = [name + eq + value for name, eq, value in items if unquote_plus(name) != "token"]
        target = path + ("?" + "&".join(kept) if kept else "")
        upgrade = any(k == "upgrade" and "websocket" in v.lower() for k, v in headers)
        cookies = tuple(
            (name.strip(), value.strip().strip('"'))
            for k, v in headers
            if k == "cookie"
            for name, _, value in (item.partition("=") for item in v.split(";"))
        )
        return cls(
            head=f"{method} {target} {version}\r\n".encode("latin-1") + fields,
            target=target,
            token=tokens[0] if tokens else None,
            is_page=method in ("GET", "HEAD") and not upgrade,
            cookies=cookies,
        )

    def cookie(self, name: str) -> str | None:
        return next((value for key, value in self.cookies if key == name), None)


class _HeadTooLarge(Exception):
    pass


async def _read_head(client: anyio.abc.SocketStream) -> tuple[bytes, bytes]:
    """The request head (up to its blank line), and whatever was read after it."""
    buffer = bytearray()
    while (end := buffer.find(b"\r\n\r\n")) < 0:
        if len(buffer) > HEAD_LIMIT:
            raise _HeadTooLarge
        buffer += await client.receive(CHUNK)
    if end + 4 > HEAD_LIMIT:
        raise _HeadTooLarge
    return bytes(buffer[: end + 4]), bytes(buffer[end + 4 :])


async def _answer(
    client: anyio.abc.SocketStream,
    status: int,
    body: bytes,
    headers: list[tuple[str, str]] | None = None,
) -> None:
    """Our own short answer. The connection closes after it, once the client has closed its
    side (or ANSWER_TIMEOUT has passed): closing with its data unread would reset the connection,
    and the client might lose the answer."""
    lines = [
        f"HTTP/1.1 {status} {REASONS[status]}",
        *(f"{name}: {value}" for name, value in headers or []),
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(body)}",
        "Cache-Control: no-store",
        "Referrer-Policy: no-referrer",
        "Connection: close",
    ]
    with anyio.move_on_after(ANSWER_TIMEOUT):
        try:
            await client.send("\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body)
            await client.send_eof()
            async for _ in client:
                pass
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass


async def _upward(
    client: anyio.abc.SocketStream,
    upstream: anyio.abc.SocketStream,
    first: bytes,
    pumps: anyio.CancelScope,
) -> None:
    """Client → the exec's stdin. When the client is done sending, so is the relay; the answer
    then has LINGER seconds to end."""
    try:
        await upstream.send(first)
        async for chunk in client:
            await upstream.send(chunk)
        await upstream.send_eof()
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        pumps.cancel()
        return
    pumps.deadline = min(pumps.deadline, anyio.current_time() + LINGER)


async def _downward(upstream: anyio.abc.SocketStream, client: anyio.abc.SocketStream) -> str | None:
    """The exec's stdout → client, demultiplexed. Returns why the relay failed when it ended
    before a byte reached the client (else None)."""
    buffer = bytearray()
    errors = bytearray()
    sent = False
    try:
        async for chunk in upstream:
            buffer += chunk
            while len(buffer) >= 8:
                size = int.from_bytes(buffer[4:8], "big")
                if len(buffer) < 8 + size:
                    break
                stream, payload = buffer[0], bytes(buffer[8 : 8 + size])
                del buffer[: 8 + size]
                if stream == 1 and payload:
                    await client.send(payload)
                    sent = True
                elif stream == 2:
                    errors += payload[: max(0, ERRORS_KEPT - len(errors))]
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        return None
    if sent:
        return None
    return errors.decode(errors="replace").strip() or "it ended without a word"


def _start_relay(api: docker.APIClient, container: str, port: int, user: str) -> socket.socket:
    """Start the relay in the container (blocking) and return its exec's connection."""
    argv = ["python3", "-I", "-S", "-c", RELAY, str(port), f"{CONNECT_WAIT:g}", f"{LINGER:g}"]
    try:
        exec_id = api.exec_create(container, argv, stdin=True, tty=False, user=user)["Id"]
        hijacked = api.exec_start(exec_id, socket=True)
    except docker.errors.NotFound as e:
        raise SandboxError("the desktop's container is gone") from e
    except (docker.errors.DockerException, requests.RequestException) as e:
        raise SandboxError(f"docker exec failed: {e}") from e
    raw = cast(socket.socket, getattr(hijacked, "_sock", hijacked))
    try:
        return raw.dup()  # ours alone: the SDK's objects may close theirs whenever they like
    finally:
        hijacked.close()
        raw.close()
