"""The live view, against real network-less containers: a stand-in for noVNC (python's
http.server serving a `vnc.html` and a 2 MiB file on 127.0.0.1:6080, plus an echo server on
127.0.0.1:6081) in the base image, and the real desktop image when it has been built."""

from __future__ import annotations

import hashlib
import logging
import os
import random
import socket
import struct
import uuid
from collections.abc import Awaitable, Callable, Iterator
from urllib.parse import parse_qs, urlsplit

import anyio
import anyio.abc
import docker
import httpx
import pytest
from cua_e2b.desktop.view import FORBIDDEN, LiveViews, PortsExhausted, View

pytestmark = pytest.mark.integration

BASE_IMAGE = "cua-gateway/base:bookworm"
DESKTOP_IMAGE = "cua-gateway/desktop:latest"
LABEL = "io.cua-gateway.test.desktop-view"
PAGE = b"<!doctype html><title>noVNC stand-in</title>\n"
BIG = 2 * 2**20
ECHO_PORT = 6081
WAIT = 30.0  # seconds any one scenario may take
DESKTOP_READY = 60.0  # seconds for the real desktop to answer

ECHO = f"""
import socketserver
class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while data := self.request.recv(65536):
            self.request.sendall(data)
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(("127.0.0.1", {ECHO_PORT}), Echo).serve_forever()
"""
SEED = 7  # the big file holds random.Random(SEED).randbytes(BIG), here and in the container
BIG_FILE = f"random.Random({SEED}).randbytes({BIG})"
STAND_IN = f"""
mkdir -p /tmp/www && cd /tmp/www
printf '%s' '{PAGE.decode()}' > vnc.html
python3 -c 'import random, sys; sys.stdout.buffer.write({BIG_FILE})' > big.bin
python3 -c '{ECHO}' &
exec python3 -m http.server 6080 --bind 127.0.0.1
"""


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


def start(api: docker.APIClient, label: str, image: str, **config: object) -> str:
    host_config = api.create_host_config(
        network_mode="none", init=True, **config.pop("host_config", {})
    )
    container = str(
        api.create_container(image, labels={LABEL: label}, host_config=host_config, **config)["Id"]
    )
    api.start(container)
    return container


@pytest.fixture(scope="module")
def stand_in(api: docker.APIClient, run_label: str) -> str:
    return start(api, run_label, BASE_IMAGE, command=["sh", "-c", STAND_IN])


def free_ports(count: int) -> range:
    """`count` consecutive ports nothing on the host listens on now."""
    rng = random.SystemRandom()
    for _ in range(100):
        first = rng.randrange(20000, 30000)
        try:
            for port in range(first, first + count):
                with socket.create_server(("127.0.0.1", port)):
                    pass
        except OSError:
            continue
        return range(first, first + count)
    raise RuntimeError("no free ports")


def run(scenario: Callable[[], Awaitable[None]], wait: float = WAIT) -> None:
    async def bounded() -> None:
        with anyio.fail_after(wait):
            await scenario()

    anyio.run(bounded)


def token_of(view: View) -> str:
    return parse_qs(urlsplit(view.url).query)["token"][0]


def base_of(view: View) -> str:
    return f"http://127.0.0.1:{view.port}"


async def cookie_of(view: View) -> tuple[str, str]:
    """The cookie the view sets when its link is opened."""
    async with httpx.AsyncClient() as http:
        response = await http.get(view.url)
    name, _, value = response.headers["set-cookie"].split(";")[0].partition("=")
    return name, value


async def raw_request(view: View, head: str) -> bytes:
    """Send `head` on a fresh connection and read until the view closes it."""
    async with await anyio.connect_tcp("127.0.0.1", view.port) as stream:
        await stream.send(head.encode())
        received = bytearray()
        async for chunk in stream:
            received += chunk
        return bytes(received)


async def read_until(stream: anyio.abc.SocketStream, marker: bytes) -> bytes:
    received = bytearray()
    while marker not in received:
        received += await stream.receive()
    return bytes(received)


def test_the_link_redirects_to_itself_without_the_token_and_sets_a_cookie(
    api: docker.APIClient, stand_in: str
) -> None:
    async def scenario() -> None:
        views = LiveViews(ports=free_ports(10))
        async with views.run():
            view = await views.open(api, stand_in)
            assert view.url.startswith(f"http://127.0.0.1:{view.port}/vnc.html?")
            query = parse_qs(urlsplit(view.url).query)
            assert query["autoconnect"] == ["true"]
            assert query["resize"] == ["scale"]
            assert query["path"] == ["websockify"]
            async with httpx.AsyncClient() as http:
                response = await http.get(view.url)
            assert response.status_code == 302
            assert response.headers["location"] == (
                "/vnc.html?autoconnect=true&resize=scale&path=websockify"
            )
            cookie = response.headers["set-cookie"]
            assert cookie.split(";")[0].partition("=")[2] == token_of(view)
            attributes = {part.strip() for part in cookie.split(";")[1:]}
            assert attributes == {"Path=/", "HttpOnly", "SameSite=Lax"}
            await view.close()

    run(scenario)


def test_the_cookie_opens_the_desktop_s_page(api: docker.APIClient, stand_in: str) -> None:
    async def scenario() -> None:
        views = LiveViews(ports=free_ports(10))
        async with views.run():
            view = await views.open(api, stand_in)
            async with httpx.AsyncClient(follow_redirects=True) as browser:
                page = await browser.get(view.url)
            assert page.status_code == 200
            assert page.content == PAGE
            assert "token" not in str(page.url)
            name, value = await cookie_of(view)
            async with httpx.AsyncClient(cookies={name: value}) as browser:
                again = await browser.get(f"{base_of(view)}/vnc.html")
            assert again.status_code == 200
            assert again.content == PAGE
            await view.close()

    run(scenario)


def test_requests_without_the_token_or_with_a_wrong_one_get_403_and_never_reach_the_desktop(
    api: docker.APIClient, stand_in: str
) -> None:
    probe = uuid.uuid4().hex

    async def scenario() -> None:
        views = LiveViews(ports=free_ports(10))
        async with views.run():
            view = await views.open(api, stand_in)
            name, value = await cookie_of(view)
            base = base_of(view)
            attempts = [
                httpx.Request("GET", f"{base}/vnc.html?probe={probe}"),
                httpx.Request("GET", f"{base}/vnc.html?probe={probe}&token=wrong"),
                httpx.Request("GET", f"{base}/vnc.html?probe={probe}&token={value[:-1]}"),
                httpx.Request(
                    "GET", f"{base}/vnc.html?probe={probe}", headers={"cookie": f"{name}=wrong"}
                ),
                httpx.Request(
                    "GET", f"{base}/vnc.html?probe={probe}", headers={"cookie": f"other={value}"}
                ),
                httpx.Request(
                    "GET",
                    f"{base}/websockify?probe={probe}",
                    headers={"upgrade": "websocket", "connection": "Upgrade"},
                ),
            ]
            async with httpx.AsyncClient() as http:
                for attempt in attempts:
                    response = await http.send(attempt)
                    assert response.status_code == 403, attempt
                    assert response.content == FORBIDDEN
                    assert "set-cookie" not in response.headers
            await view.close()

    run(scenario)
    assert probe.encode() not in api.logs(stand_in)


def test_two_views_do_not_accept_each_other_s_tokens(api: docker.APIClient, stand_in: str) -> None:
    async def scenario() -> None:
        views = LiveViews(ports=free_ports(10))
        async with views.run():
            first = await views.open(api, stand_in)
            second = await views.open(api, stand_in)
            assert first.port != second.port
            assert token_of(first) != token_of(second)
            name, value = await cookie_of(first)
            async with httpx.AsyncClient() as http:
                crossed = await http.get(f"{base_of(second)}/vnc.html?token={token_of(first)}")
                assert crossed.status_code == 403
                cookie = await http.get(
                    f"{base_of(second)}/vnc.html", headers={"cookie": f"{name}={value}"}
                )
                assert cookie.status_code == 403
            async with httpx.AsyncClient(follow_redirects=True) as browser:
                assert (await browser.get(second.url)).content == PAGE
                # the browser holds both cookies (they ignore ports): each view finds its own
                assert (await browser.get(first.url)).content == PAGE
                assert (await browser.get(f"{base_of(second)}/vnc.html")).content == PAGE
            await first.close()
            await second.close()

    run(scenario)


def test_a_closed_view_cuts_its_connections_and_refuses_new_ones(
    api: docker.APIClient, stand_in: str
) -> None:
    async def scenario() -> None:
        views = LiveViews(ports=free_ports(10))
        async with views.run():
            view = await views.open(api, stand_in, port=ECHO_PORT)
            name, value = await cookie_of(view)
            stream = await anyio.connect_tcp("127.0.0.1", view.port)
            async with stream:
                await stream.send(f"GET /echo HTTP/1.1\r\nCookie: {name}={value}\r\n\r\n".encode())
                await read_until(stream, b"\r\n\r\n")
                await stream.send(b"still there?")
                await read_until(stream, b"still there?")
                await view.close()
                with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                    await stream.receive()
            with pytest.raises(OSError):
                await anyio.connect_tcp("127.0.0.1", view.port)

    run(scenario)


def test_a_client_that_stops_sending_still_gets_the_whole_answer(
    api: docker.APIClient, stand_in: str
) -> None:
    """Half-close: the client's end of sending reaches the desktop, whose answer still comes
    back in full before the connection ends."""

    async def scenario() -> None:
        views = LiveViews(ports=free_ports(10))
        async with views.run():
            view = await views.open(api, stand_in, port=ECHO_PORT)
            token = token_of(view)
            head = f"GET /websockify?token={token} HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"
            payload = os.urandom(300_000)
            async with await anyio.connect_tcp("127.0.0.1", view.port) as stream:
                await stream.send(head.encode() + payload)
                await stream.send_eof()
                received = bytearray()
                async for chunk in stream:
                    received += chunk
            # the desktop saw the request without the token, then every byte after it
            assert bytes(received) == b"GET /websockify HTTP/1.1\r\nUpgrade: websocket\r\n\r\n" + (
                payload
            )
            await view.close()

    run(scenario)


def test_a_large_file_is_relayed_intact(api: docker.APIClient, stand_in: str) -> None:
    async def scenario() -> None:
        views = LiveViews(ports=free_ports(10))
        async with views.run():
            view = await views.open(api, stand_in)
            async with httpx.AsyncClient(follow_redirects=True) as browser:
                await browser.get(view.url)
                response = await browser.get(f"{base_of(view)}/big.bin")
            assert response.status_code == 200
            assert len(response.content) == BIG
            expected = random.Random(SEED).randbytes(BIG)  # noqa: S311
            assert hashlib.sha256(response.content).digest() == hashlib.sha256(expected).digest()
            await view.close()

    run(scenario)


@pytest.mark.parametrize(
    "case",
    [(6080, "/big.bin", b"200 OK"), (ECHO_PORT, "/echo", b"GET /echo")],
    ids=["mid-download", "while-the-desktop-is-quiet"],
)
def test_a_client_that_vanishes_leaves_no_relay_behind_and_no_error(
    api: docker.APIClient,
    stand_in: str,
    caplog: pytest.LogCaptureFixture,
    case: tuple[int, str, bytes],
) -> None:
    port, path, seen = case  # where in the desktop, what to ask, what shows the relay works

    async def relays() -> list[str]:
        info = await anyio.to_thread.run_sync(api.inspect_container, stand_in)
        return list(info["ExecIDs"] or [])

    async def scenario() -> None:
        views = LiveViews(ports=free_ports(10))
        async with views.run():
            view = await views.open(api, stand_in, port=port)
            name, value = await cookie_of(view)
            stream = await anyio.connect_tcp("127.0.0.1", view.port)
            await stream.send(f"GET {path} HTTP/1.1\r\nCookie: {name}={value}\r\n\r\n".encode())
            await read_until(stream, seen)
            assert await relays()
            raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)  # noqa: S610
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await stream.aclose()  # a reset, as when a tab is killed
            while await relays():
                pass
            await view.close()

    with caplog.at_level(logging.WARNING, logger="cua_e2b.desktop.view"):
        run(scenario)
    assert not caplog.records


def test_an_exhausted_port_range_is_a_clear_error_and_closing_a_view_frees_its_port(
    api: docker.APIClient, stand_in: str
) -> None:
    ports = free_ports(2)

    async def scenario() -> None:
        views = LiveViews(ports=ports)
        async with views.run():
            first = await views.open(api, stand_in)
            second = await views.open(api, stand_in)
            assert {first.port, second.port} == set(ports)
            with pytest.raises(PortsExhausted, match=r"no free port for a live view") as error:
                await views.open(api, stand_in)
            assert f"127.0.0.1:{ports[0]}-{ports[1]}" in str(error.value)
            await first.close()
            third = await views.open(api, stand_in)
            assert third.port == first.port
            async with httpx.AsyncClient(follow_redirects=True) as browser:
                assert (await browser.get(third.url)).content == PAGE

    run(scenario)


def test_a_port_busy_on_the_host_is_skipped(api: docker.APIClient, stand_in: str) -> None:
    ports = free_ports(2)

    async def scenario() -> None:
        views = LiveViews(ports=ports)
        async with views.run():
            with socket.create_server(("127.0.0.1", ports[0])):
                view = await views.open(api, stand_in)
            assert view.port == ports[1]

    run(scenario)


def test_a_desktop_whose_view_does_not_answer_gets_502(
    api: docker.APIClient, stand_in: str
) -> None:
    async def scenario() -> None:
        views = LiveViews(ports=free_ports(10))
        async with views.run():
            view = await views.open(api, stand_in, port=6099)  # nothing listens there
            name, value = await cookie_of(view)
            async with httpx.AsyncClient(cookies={name: value}, timeout=WAIT) as browser:
                response = await browser.get(f"{base_of(view)}/vnc.html")
            assert response.status_code == 502
            assert "nothing answers on 127.0.0.1:6099" in response.text

    run(scenario)


def test_the_real_desktop_serves_novnc_and_its_vnc_server_through_the_view(
    api: docker.APIClient, run_label: str
) -> None:
    if not api.images(name=DESKTOP_IMAGE):
        pytest.skip(f"{DESKTOP_IMAGE} is not built")
    tmpfs = "rw,nosuid,nodev,size=64m"
    container = start(
        api,
        run_label,
        DESKTOP_IMAGE,
        host_config={
            "read_only": True,
            "tmpfs": {
                "/home/user": f"{tmpfs},uid=1000,gid=1000",
                "/tmp": f"{tmpfs},mode=1777",  # noqa: S108
            },
        },
    )

    async def ready() -> None:
        while True:
            check = await anyio.to_thread.run_sync(
                lambda: api.exec_create(container, ["desktop-session", "--ready"])["Id"]
            )
            await anyio.to_thread.run_sync(api.exec_start, check)
            if (await anyio.to_thread.run_sync(api.exec_inspect, check))["ExitCode"] == 0:
                return

    async def scenario() -> None:
        with anyio.fail_after(DESKTOP_READY):
            await ready()
        views = LiveViews(ports=free_ports(10))
        async with views.run():
            view = await views.open(api, container)
            async with httpx.AsyncClient(follow_redirects=True) as browser:
                page = await browser.get(view.url)
                assert page.status_code == 200
                assert b"noVNC" in page.content
                script = await browser.get(f"{base_of(view)}/app/ui.js")
                assert script.status_code == 200
            name, value = await cookie_of(view)
            async with await anyio.connect_tcp("127.0.0.1", view.port) as stream:
                await stream.send(
                    (
                        f"GET /websockify HTTP/1.1\r\nHost: 127.0.0.1:{view.port}\r\n"
                        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n"
                        f"Origin: http://127.0.0.1:{view.port}\r\nCookie: {name}={value}\r\n\r\n"
                    ).encode()
                )
                received = await read_until(stream, b"\r\n\r\n")
                assert received.startswith(b"HTTP/1.1 101 ")
                frames = received.split(b"\r\n\r\n", 1)[1]
                while len(frames) < 2 + 12:
                    frames += await stream.receive()
                # one unmasked binary frame from the server, 12 bytes long: the RFB banner
                assert frames[:2] == b"\x82\x0c"
                assert frames[2:14] == b"RFB 003.008\n"
            await view.close()

    run(scenario, DESKTOP_READY + WAIT)
