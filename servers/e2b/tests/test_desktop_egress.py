"""The egress proxy, against real network-less containers: programs in the container reach
allowlisted servers on this host (loopback servers on 127.0.0.2, the host the proxy connects
out from) through 127.0.0.1:3128, and nothing else; and the local backend's wiring (a desktop's
proxy lives and dies with it) against the desktop image. The allowlist alone is tested in
test_desktop_allowlist.py."""

from __future__ import annotations

import hashlib
import http.server
import logging
import random
import socket
import socketserver
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import anyio
import anyio.lowlevel
import docker
import pytest
from cua_e2b.backends import Limits, SandboxError
from cua_e2b.backends._exec import Output, frames
from cua_e2b.backends._exec import run as exec_run
from cua_e2b.backends.local import LABEL_SANDBOX, LocalBackend
from cua_e2b.desktop import Screen, egress
from cua_e2b.desktop.allowlist import EgressPolicy
from cua_e2b.desktop.egress import PROXY_ENV, PROXY_PORT, WINDOW, Egress, EgressError

from cua_gateway.config.server import BuildSpec, ServerConfig
from cua_gateway.runtime.images import ensure_image

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(300),  # a first build of the desktop image takes a minute or two
]

IMAGE = "cua-gateway/base:bookworm"
DESKTOP_IMAGE = "cua-gateway/desktop:latest"
DESKTOP_CONTEXT = Path(__file__).resolve().parents[1] / "desktop"
LABEL = "io.cua-gateway.test.desktop-egress"
USER = "65534:65534"  # the base image has no uid 1000
HOST = "127.0.0.2"  # the test servers' address: not 127.0.0.1, which clients reach directly
WAIT = 60.0  # seconds any one scenario may take
RUN_WAIT = 30.0  # seconds one program in the container may take
BIG = 5 * 2**20
SEED = 11
STALL = 1.0  # seconds without progress after which the firehose counts as held back
HELD_BACK = 32 * 2**20  # bytes the firehose may push into a connection nobody reads, at most


@dataclass
class Servers:
    """Loopback servers on this host: HTTP on HOST and on 127.0.0.1, a TCP echo, a firehose."""

    http: int
    http_loopback: int
    echo: int
    firehose: int
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    pushed: list[int] = field(default_factory=list)  # bytes the firehose sent before it stalled
    stalled: threading.Event = field(default_factory=threading.Event)


BIG_BODY = random.Random(SEED).randbytes(BIG)  # noqa: S311


def http_handler(servers: list[Servers]) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            servers[0].requests.append((self.requestline, dict(self.headers.items())))
            body = BIG_BODY if self.path == "/big" else f"hello from {self.path}\n".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


class Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


def firehose_handler(servers: list[Servers]) -> type[socketserver.BaseRequestHandler]:
    class Firehose(socketserver.BaseRequestHandler):
        """Sends until a send makes no progress for STALL seconds (or HELD_BACK bytes have
        gone, which only unbounded buffering allows), then records how much it sent."""

        def handle(self) -> None:
            self.request.settimeout(STALL)
            chunk, pushed = bytes(65536), 0
            try:
                while pushed < HELD_BACK:
                    pushed += self.request.send(chunk)
            except TimeoutError:
                pass
            except OSError:
                return
            servers[0].pushed.append(pushed)
            servers[0].stalled.set()

    return Firehose


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    box: list[Servers] = []
    socketserver.ThreadingTCPServer.daemon_threads = True
    running = [
        http.server.ThreadingHTTPServer((HOST, 0), http_handler(box)),
        http.server.ThreadingHTTPServer(("127.0.0.1", 0), http_handler(box)),
        socketserver.ThreadingTCPServer((HOST, 0), Echo),
        socketserver.ThreadingTCPServer((HOST, 0), firehose_handler(box)),
    ]
    for server in running:
        server.daemon_threads = True  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
    box.append(Servers(*(server.server_address[1] for server in running)))
    yield box[0]
    for server in running:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def api() -> Iterator[docker.APIClient]:
    client = docker.APIClient(version="auto", timeout=60)
    yield client
    client.close()


@pytest.fixture(scope="module")
def run_label(api: docker.APIClient) -> Iterator[str]:
    """This run's label value; every container carrying it is removed at the end."""
    value = uuid.uuid4().hex
    yield value
    for found in api.containers(all=True, filters={"label": f"{LABEL}={value}"}):
        api.remove_container(found["Id"], force=True)


def start(api: docker.APIClient, label: str, command: list[str]) -> str:
    host_config = api.create_host_config(network_mode="none", init=True)
    created = api.create_container(
        IMAGE,
        command,
        user=USER,
        environment=PROXY_ENV,
        labels={LABEL: label},
        host_config=host_config,
    )
    container = str(created["Id"])
    api.start(container)
    return container


@pytest.fixture
def desktop(api: docker.APIClient, run_label: str) -> Iterator[str]:
    """A container of its own for each test: one proxy at a time listens on its port 3128."""
    container = start(api, run_label, ["sleep", "infinity"])
    yield container
    api.remove_container(container, force=True)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        with anyio.fail_after(WAIT):
            await scenario()

    anyio.run(bounded)


def policy(*entries: str) -> EgressPolicy:
    return EgressPolicy.parse(list(entries))


async def python(
    api: docker.APIClient, container: str, code: str, stdin: bytes = b"", *args: str
) -> str:
    """Run `code` with python3 in the container as its user; its stdout, once it succeeded."""
    out: Output = await anyio.to_thread.run_sync(
        partial(
            exec_run,
            api,
            container,
            user=USER,
            argv=["python3", "-c", code, *args],
            stdin=stdin,
            workdir="/",
            wait=RUN_WAIT,
            limit=BIG * 2,
        )
    )
    assert out.complete, out
    assert out.exit_code == 0, out.text(2)
    return out.text(1)


# In the container: fetch each URL given on stdin (one a line) with urllib, proxies from the
# environment, several at once; print "STATUS LENGTH SHA256 FIRST-LINE" for each, in order.
FETCH = """
import hashlib, sys, urllib.error, urllib.request
from concurrent.futures import ThreadPoolExecutor
def fetch(url):
    try:
        with urllib.request.urlopen(url, timeout=20) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read()
    line = body.split(b"\\n")[0].decode(errors="replace") if len(body) < 1000 else "-"
    return f"{status} {len(body)} {hashlib.sha256(body).hexdigest()} {line}"
urls = sys.stdin.read().split()
with ThreadPoolExecutor(max(1, len(urls))) as pool:
    for line in pool.map(fetch, urls):
        print(line)
"""

# In the container: send stdin to the proxy as it is, end sending, print everything it answers.
RAW = """
import socket, sys
s = socket.create_connection(("127.0.0.1", 3128), 10)
s.sendall(sys.stdin.buffer.read())
s.shutdown(socket.SHUT_WR)
answer = b""
while data := s.recv(65536):
    answer += data
sys.stdout.write(answer.decode("latin-1"))
"""


@dataclass(frozen=True)
class Fetched:
    status: int
    length: int
    sha256: str
    first_line: str


async def fetch(api: docker.APIClient, container: str, *urls: str) -> list[Fetched]:
    out = await python(api, container, FETCH, "\n".join(urls).encode())
    results = []
    for line in out.splitlines():
        status, length, digest, first = line.split(" ", 3)
        results.append(Fetched(int(status), int(length), digest, first))
    return results


def test_an_allowlisted_host_answers_through_the_proxy_environment(
    api: docker.APIClient, desktop: str, servers: Servers, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with Egress(api, desktop, policy(f"{HOST}:{servers.http}"), user=USER).run():
            [fetched] = await fetch(api, desktop, f"http://{HOST}:{servers.http}/hello?x=1")
        assert (fetched.status, fetched.first_line) == (200, "hello from /hello?x=1")

    servers.requests.clear()
    with caplog.at_level(logging.INFO, logger="cua_e2b.desktop.egress"):
        run(scenario)
    # the server saw the request in origin form, without the proxy's own fields
    [(line, headers)] = servers.requests
    assert line == "GET /hello?x=1 HTTP/1.1"
    assert headers["Host"] == f"{HOST}:{servers.http}"
    assert headers["Connection"] == "close"
    assert not any(name.lower().startswith("proxy-") for name in headers)
    assert f"allowed GET {HOST}:{servers.http} ({HOST})" in caplog.text


def test_targets_off_the_allowlist_get_403_with_a_one_line_reason_and_are_never_reached(
    api: docker.APIClient, desktop: str, servers: Servers, caplog: pytest.LogCaptureFixture
) -> None:
    other_port = f"{HOST}:{servers.echo}"

    async def scenario() -> None:
        async with Egress(api, desktop, policy(f"{HOST}:{servers.http}"), user=USER).run():
            port, name = await fetch(
                api, desktop, f"http://{other_port}/x", "http://example.com/secret"
            )
            assert (port.status, name.status) == (403, 403)
            assert port.first_line == f"{other_port} is not on this desktop's egress allowlist"
            assert name.first_line == "example.com:80 is not on this desktop's egress allowlist"
            tunnel = await python(
                api, desktop, RAW, f"CONNECT {other_port} HTTP/1.1\r\n\r\n".encode()
            )
            assert tunnel.startswith("HTTP/1.1 403 Forbidden\r\n")
            body = tunnel.partition("\r\n\r\n")[2]
            assert body == f"{other_port} is not on this desktop's egress allowlist\n"

    servers.requests.clear()
    with caplog.at_level(logging.INFO, logger="cua_e2b.desktop.egress"):
        run(scenario)
    assert servers.requests == []
    assert f"refused GET {other_port}" in caplog.text
    assert "refused GET example.com:80" in caplog.text
    assert f"refused CONNECT {other_port}" in caplog.text


def test_a_name_that_resolves_to_loopback_needs_its_address_on_the_allowlist_too(
    api: docker.APIClient, desktop: str, servers: Servers
) -> None:
    port = servers.http_loopback
    request = f"GET http://localhost:{port}/rebound HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n"

    async def scenario() -> None:
        async with Egress(api, desktop, policy(f"localhost:{port}"), user=USER).run():
            refused = await python(api, desktop, RAW, request.encode())
        assert refused.startswith("HTTP/1.1 403 Forbidden\r\n")
        assert "resolves to" in refused
        assert "a private, loopback or reserved address" in refused
        both = policy(f"localhost:{port}", f"127.0.0.1:{port}")
        async with Egress(api, desktop, both, user=USER).run():
            allowed = await python(api, desktop, RAW, request.encode())
        assert allowed.startswith("HTTP/1.0 200") or allowed.startswith("HTTP/1.1 200")
        assert allowed.endswith("hello from /rebound\n")

    run(scenario)


def test_requests_a_proxy_cannot_serve_get_400(
    api: docker.APIClient, desktop: str, servers: Servers
) -> None:
    async def scenario() -> None:
        async with Egress(api, desktop, policy(f"{HOST}:{servers.http}"), user=USER).run():
            for request, reason in [
                ("GET /relative HTTP/1.1\r\n\r\n", "ask for an absolute http:// URL"),
                (f"GET https://{HOST}:{servers.http}/ HTTP/1.1\r\n\r\n", "with CONNECT"),
                (f"CONNECT {HOST} HTTP/1.1\r\n\r\n", "CONNECT needs host:port"),
                ("hello\r\n\r\n", "this is an HTTP proxy"),
            ]:
                answer = await python(api, desktop, RAW, request.encode())
                assert answer.startswith("HTTP/1.1 400 Bad Request\r\n"), request
                assert reason in answer, answer

    run(scenario)


# In the container: CONNECT to the echo server, send 3 windows of bytes and end sending; the
# echo must come back whole, then the end.
TUNNEL = """
import os, socket, sys
s = socket.create_connection(("127.0.0.1", 3128), 10)
s.sendall(f"CONNECT {sys.argv[1]} HTTP/1.1\\r\\nHost: {sys.argv[1]}\\r\\n\\r\\n".encode())
head = b""
while b"\\r\\n\\r\\n" not in head:
    head += s.recv(1)
assert head.startswith(b"HTTP/1.1 200 "), head
payload = os.urandom(int(sys.argv[2]))
s.sendall(payload)
s.shutdown(socket.SHUT_WR)
echoed = b""
while data := s.recv(65536):
    echoed += data
assert echoed == payload, (len(echoed), len(payload))
print("echoed", len(echoed))
"""


def test_connect_to_an_allowlisted_tcp_server_carries_bytes_both_ways_and_half_closes(
    api: docker.APIClient, desktop: str, servers: Servers
) -> None:
    target = f"{HOST}:{servers.echo}"
    size = 3 * WINDOW + 12345

    async def scenario() -> None:
        async with Egress(api, desktop, policy(target), user=USER).run() as egress:
            out = await python(api, desktop, TUNNEL, b"", target, str(size))
            assert out == f"echoed {size}\n"
            with anyio.fail_after(5):
                while egress.connections:
                    await anyio.lowlevel.checkpoint()  # the end arrives frame by frame

    run(scenario)


def test_without_the_proxy_the_desktop_has_no_network(
    api: docker.APIClient, desktop: str, servers: Servers
) -> None:
    probe = f"""
import socket
for target in [("{HOST}", {servers.http}), ("1.1.1.1", 80), ("127.0.0.1", {PROXY_PORT})]:
    try:
        socket.create_connection(target, 5).close()
        print("reached", target)
    except OSError as e:
        print("unreachable", e.errno)
"""

    async def scenario() -> None:
        before = await python(api, desktop, probe)
        assert "reached" not in before
        async with Egress(api, desktop, policy(f"{HOST}:{servers.http}"), user=USER).run():
            during = await python(api, desktop, probe)
            # direct connections still fail: only the proxy's own port answers
            assert during.splitlines()[:2] == before.splitlines()[:2]
            assert during.splitlines()[2] == f"reached ('127.0.0.1', {PROXY_PORT})"

    run(scenario)


def test_many_connections_at_once_each_get_their_own_answer(
    api: docker.APIClient, desktop: str, servers: Servers
) -> None:
    count = 40
    base = f"http://{HOST}:{servers.http}"

    async def scenario() -> None:
        egress = Egress(api, desktop, policy(f"{HOST}:{servers.http}"), user=USER)
        async with egress.run():
            urls = [f"{base}/n/{index}" for index in range(count)]
            results = await fetch(api, desktop, *urls, f"{base}/big")
            assert [r.status for r in results] == [200] * (count + 1)
            assert [r.first_line for r in results[:count]] == [
                f"hello from /n/{index}" for index in range(count)
            ]
            assert results[count].sha256 == hashlib.sha256(BIG_BODY).hexdigest()
            with anyio.fail_after(5):
                while egress.connections:
                    await anyio.lowlevel.checkpoint()

    run(scenario)


def test_a_5_mb_download_arrives_intact(
    api: docker.APIClient, desktop: str, servers: Servers
) -> None:
    async def scenario() -> None:
        async with Egress(api, desktop, policy(f"{HOST}:{servers.http}"), user=USER).run():
            started = time.perf_counter()
            [fetched] = await fetch(api, desktop, f"http://{HOST}:{servers.http}/big")
            elapsed = time.perf_counter() - started
        assert fetched.status == 200
        assert fetched.length == BIG
        assert fetched.sha256 == hashlib.sha256(BIG_BODY).hexdigest()
        logging.getLogger(__name__).info("5 MiB in %.3f s, exec included", elapsed)

    run(scenario)


# In the container: open a CONNECT tunnel to the firehose, say so, and hold it without reading
# until stdin ends.
HOLD = """
import socket, sys
s = socket.create_connection(("127.0.0.1", 3128), 10)
s.sendall(f"CONNECT {sys.argv[1]} HTTP/1.1\\r\\n\\r\\n".encode())
assert s.recv(12) == b"HTTP/1.1 200", "refused"
print("holding", flush=True)
sys.stdin.buffer.read()
"""


def test_a_client_that_stops_reading_holds_back_only_its_own_connection(
    api: docker.APIClient, desktop: str, servers: Servers
) -> None:
    target = f"{HOST}:{servers.firehose}"

    def hold() -> socket.socket:
        argv = ["python3", "-c", HOLD, target]
        exec_id = api.exec_create(desktop, argv, stdin=True, user=USER)["Id"]
        hijacked = api.exec_start(exec_id, socket=True)
        raw: socket.socket = hijacked._sock
        sock = raw.dup()
        hijacked.close()
        raw.close()
        seen = b""
        for stream, data in frames(sock, time.monotonic() + RUN_WAIT):
            seen += data
            assert stream == 1, data
            if b"holding" in seen:
                return sock
        raise AssertionError(f"the holder ended: {seen!r}")

    async def scenario() -> None:
        entries = (f"{HOST}:{servers.http}", target)
        async with Egress(api, desktop, policy(*entries), user=USER).run():
            holder = await anyio.to_thread.run_sync(hold)
            try:
                assert await anyio.to_thread.run_sync(servers.stalled.wait, RUN_WAIT)
                [fetched] = await fetch(api, desktop, f"http://{HOST}:{servers.http}/big")
                assert fetched.sha256 == hashlib.sha256(BIG_BODY).hexdigest()
            finally:
                holder.close()

    servers.stalled.clear()
    run(scenario)
    [pushed] = servers.pushed
    assert WINDOW <= pushed < HELD_BACK


def test_leaving_stops_the_proxy_in_the_desktop_and_an_egress_runs_once(
    api: docker.APIClient, desktop: str, servers: Servers
) -> None:
    closed = f"""
import socket
try:
    socket.create_connection(("127.0.0.1", {PROXY_PORT}), 5).close()
    print("open")
except ConnectionRefusedError:
    print("closed")
"""

    async def scenario() -> None:
        egress = Egress(api, desktop, policy(f"{HOST}:{servers.http}"), user=USER)
        async with egress.run():
            assert egress.alive
            assert await python(api, desktop, closed) == "open\n"
        assert not egress.alive
        assert await python(api, desktop, closed) == "closed\n"
        with pytest.raises(RuntimeError, match="already run"):
            async with egress.run():
                pass
        # a new one takes the port again
        async with Egress(api, desktop, policy(f"{HOST}:{servers.http}"), user=USER).run():
            [fetched] = await fetch(api, desktop, f"http://{HOST}:{servers.http}/again")
            assert fetched.first_line == "hello from /again"

    run(scenario)


# In the container: ask for the big file, read a little of it, then reset the connection.
VANISH = """
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", 3128), 10)
s.sendall(f"GET http://{sys.argv[1]}/big HTTP/1.1\\r\\nHost: {sys.argv[1]}\\r\\n\\r\\n".encode())
seen = 0
while seen < 100_000:
    seen += len(s.recv(65536))
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()
print("vanished")
"""


def test_a_client_that_vanishes_mid_download_leaves_nothing_behind_and_no_error(
    api: docker.APIClient, desktop: str, servers: Servers, caplog: pytest.LogCaptureFixture
) -> None:
    target = f"{HOST}:{servers.http}"

    async def scenario() -> None:
        egress = Egress(api, desktop, policy(target), user=USER)
        async with egress.run():
            assert await python(api, desktop, VANISH, b"", target) == "vanished\n"
            with anyio.fail_after(5):
                while egress.connections:
                    await anyio.lowlevel.checkpoint()
            [fetched] = await fetch(api, desktop, f"http://{target}/after")
            assert fetched.first_line == "hello from /after"

    with caplog.at_level(logging.WARNING, logger="cua_e2b.desktop.egress"):
        run(scenario)
    assert not caplog.records


def test_an_error_inside_the_egress_block_comes_out_as_itself(
    api: docker.APIClient, desktop: str
) -> None:
    async def scenario() -> None:
        with pytest.raises(KeyError, match="mine"):
            async with Egress(api, desktop, policy("example.com"), user=USER).run():
                raise KeyError("mine")

    run(scenario)


def test_a_proxy_that_cannot_listen_is_a_clear_error(api: docker.APIClient, run_label: str) -> None:
    squatter = f"""
import signal, socket
s = socket.create_server(("127.0.0.1", {PROXY_PORT}))
signal.pause()
"""
    container = start(api, run_label, ["python3", "-c", squatter])
    listening = f"import socket; socket.create_connection(('127.0.0.1', {PROXY_PORT}), 5)"

    async def listens() -> bool:
        out = await anyio.to_thread.run_sync(
            partial(
                exec_run, api, container, user=USER, argv=["python3", "-c", listening],
                stdin=None, workdir="/", wait=RUN_WAIT, limit=4096,
            )
        )  # fmt: skip
        return out.exit_code == 0

    async def scenario() -> None:
        while not await listens():
            pass
        with pytest.raises(EgressError, match="address already in use") as error:
            async with Egress(api, container, policy("example.com"), user=USER).run():
                pass
        assert error.value.container_id == container
        with pytest.raises(EgressError, match="gone"):
            async with Egress(api, "no-such-container", policy("example.com")).run():
                pass

    try:
        run(scenario)
    finally:
        api.remove_container(container, force=True)


def test_serve_runs_in_a_task_group_of_its_own_until_close_from_another_task(
    api: docker.APIClient, desktop: str, servers: Servers
) -> None:
    closed = f"""
import socket
try:
    socket.create_connection(("127.0.0.1", {PROXY_PORT}), 5).close()
    print("open")
except ConnectionRefusedError:
    print("closed")
"""

    async def scenario() -> None:
        proxy = Egress(api, desktop, policy(f"{HOST}:{servers.http}"), user=USER)
        async with anyio.create_task_group() as tasks:
            await tasks.start(proxy.serve)  # returns once the agent listens
            assert proxy.alive
            [fetched] = await fetch(api, desktop, f"http://{HOST}:{servers.http}/served")
            assert fetched.first_line == "hello from /served"
            async with anyio.create_task_group() as other:
                other.start_soon(proxy.close)  # a task other than the one that started it
            assert not proxy.alive
            assert await python(api, desktop, closed) == "closed\n"
            await proxy.close()  # again: nothing left to do
            # a proxy that cannot start raises from start(), and the task group lives on
            with pytest.raises(EgressError, match="gone"):
                await tasks.start(Egress(api, "no-such-container", policy("example.com")).serve)
            await Egress(api, desktop, policy("example.com")).close()  # never served: at once

    run(scenario)


# The local backend's wiring.


@pytest.fixture(scope="module")
def desktop_image(api: docker.APIClient) -> str:
    config = ServerConfig(
        image=DESKTOP_IMAGE,
        build=BuildSpec(context=str(DESKTOP_CONTEXT), args={"BASE_IMAGE": IMAGE}),
    )
    return anyio.run(ensure_image, api, "desktop", config)


@pytest.fixture
def sandbox_ids(api: docker.APIClient) -> Iterator[Callable[[], str]]:
    """New sandbox ids; teardown removes every container carrying one of them."""
    made: list[str] = []

    def new() -> str:
        made.append("test-egress-" + uuid.uuid4().hex[:8])
        return made[-1]

    yield new
    for sandbox_id in made:
        for found in containers_of(api, sandbox_id):
            api.remove_container(found["Id"], force=True)


def containers_of(api: docker.APIClient, sandbox_id: str) -> list[dict[str, str]]:
    found: list[dict[str, str]] = api.containers(
        all=True, filters={"label": f"{LABEL_SANDBOX}={sandbox_id}"}
    )
    return found


def test_a_malformed_allowlist_is_refused_before_a_container_is_made(
    api: docker.APIClient, desktop_image: str, sandbox_ids: Callable[[], str]
) -> None:
    sandbox_id = sandbox_ids()

    async def scenario() -> None:
        backend = LocalBackend(IMAGE, Limits(), desktop_image=desktop_image)
        async with backend.run():
            with pytest.raises(SandboxError, match="allow_network: egress allowlist entry 'a b'"):
                await backend.create_desktop(sandbox_id, Screen(800, 600), ["example.com", "a b"])
            assert not containers_of(api, sandbox_id)

    run(scenario)


def test_a_desktop_whose_proxy_cannot_start_is_closed_with_a_clear_error(
    api: docker.APIClient,
    desktop_image: str,
    sandbox_ids: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(egress, "PROXY_PORT", 6080)  # noVNC's, in the desktop: taken
    sandbox_id, other = sandbox_ids(), sandbox_ids()

    async def scenario() -> None:
        backend = LocalBackend(IMAGE, Limits(), desktop_image=desktop_image)
        async with backend.run():
            with pytest.raises(SandboxError) as error:
                await backend.create_desktop(sandbox_id, Screen(800, 600), ["example.com"])
            message = str(error.value)
            assert message.startswith(f"desktop {sandbox_id} did not start: the egress proxy")
            assert "address already in use" in message
            assert not containers_of(api, sandbox_id)
            # the backend serves on
            desktop = await backend.create_desktop(other, Screen(800, 600))
            await desktop.close()

    run(scenario)
