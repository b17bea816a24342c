"""Desktop sessions of the e2b server (local backend), through the gateway running the shipped
entry: a desktop container per session, the computer-use tools, the live view a person opens
in a browser (noVNC behind a per-session token, on a host port of the server's range), and the
network allowlist (an HTTP proxy on the desktop's loopback that reaches only the hosts listed)."""

from __future__ import annotations

import base64
import http.server
import io
import json
import secrets
import shlex
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import anyio
import docker
import docker.errors
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from PIL import Image, ImageChops

from cua_gateway.downstream.pool import ServerPool
from tests.e2e.conftest import ROOT, call, e2b_server, fails
from tests.integration.conftest import text_of
from tests.integration.frontends import free_port, http_gateway

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
T = TypeVar("T")

LABEL_SANDBOX = "io.cua-gateway.e2b.sandbox"
LABEL_DESKTOP = "io.cua-gateway.e2b.desktop"
WAIT = 30.0  # seconds for something on a desktop to happen
POLL = 0.2  # seconds between looks at it
SCREENSHOTS = ROOT / ".cua" / "screenshots"  # the README's picture is copied from here


async def until(check: Callable[[], Awaitable[T | None]], what: str) -> T:
    with anyio.fail_after(WAIT):
        while True:
            found = await check()
            if found:
                return found
            await anyio.sleep(POLL)
    raise AssertionError(what)  # pragma: no cover (fail_after raises first)


async def screenshot(pool: ServerPool, desktop: str) -> Image.Image:
    result = await pool.request(
        "tools/call", {"name": "screenshot", "arguments": {"sandbox_id": desktop}}
    )
    [image] = [c for c in result["content"] if c["type"] == "image"]
    assert image["mimeType"] == "image/png"
    return Image.open(io.BytesIO(base64.b64decode(image["data"]))).convert("RGB")


async def open_xterm(pool: ServerPool, desktop: str, command: str = "") -> dict[str, Any]:
    """Launch an xterm titled of its own (running `command`); once it has the focus, its
    window (fluxbox gives a new window the focus on a click)."""
    title = "xterm-" + secrets.token_hex(3)
    await call(
        pool,
        "launch",
        sandbox_id=desktop,
        application=f"xterm -title {title}" + (f" -e {command}" if command else ""),
    )

    async def focused() -> dict[str, Any] | None:
        windows = (await call(pool, "list_windows", sandbox_id=desktop))["windows"]
        mine = [w for w in windows if w["title"] == title]
        if mine and not mine[0]["focused"]:
            x, y = center(mine[0])
            await call(pool, "left_click", sandbox_id=desktop, x=x, y=y)
        return mine[0] if mine and mine[0]["focused"] else None

    return await until(focused, f"{title} did not get the focus")


def center(window: dict[str, Any]) -> tuple[int, int]:
    return window["x"] + window["width"] // 2, window["y"] + window["height"] // 2


def region(shot: Image.Image, window: dict[str, Any]) -> Image.Image:
    box = (window["x"], window["y"], window["x"] + window["width"], window["y"] + window["height"])
    return shot.crop(box)


def desktops_of(api: docker.APIClient, desktop: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = api.containers(
        all=True, filters={"label": f"{LABEL_SANDBOX}={desktop}"}
    )
    return found


def test_an_agent_works_a_desktop_with_the_computer_use_tools(
    gateway_name: str, docker_api: docker.APIClient
) -> None:
    """The seed's flow: create a desktop, launch a terminal, type a command and press Enter;
    its output is on the screen and in a file read back with the sandbox's file tool; clicks
    move the focus and the wheel scrolls."""

    async def scenario() -> None:
        async with e2b_server(gateway_name) as pool:
            created = await call(pool, "create_desktop")
            desktop = created["sandbox_id"]
            assert created["type"] == "desktop"
            assert created["url"].startswith("http://127.0.0.1:")
            assert (created["width"], created["height"]) == (1024, 768)
            assert created["network"] == "none"

            first = await open_xterm(pool, desktop)
            command = "seq 300; echo typed-on-the-desktop > /home/user/typed.txt"
            await call(pool, "type_text", sandbox_id=desktop, text=command)
            await call(pool, "press_keys", sandbox_id=desktop, keys="enter")

            async def typed() -> str | None:
                result = await pool.request(
                    "tools/call",
                    {
                        "name": "read_file",
                        "arguments": {"sandbox_id": desktop, "path": "typed.txt"},
                    },
                )
                return None if result.get("isError") else json.loads(text_of(result))["content"]

            assert await until(typed, "the typed command did not run") == "typed-on-the-desktop\n"
            shot = await screenshot(pool, desktop)
            assert shot.size == (1024, 768)
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shot.save(SCREENSHOTS / "desktop.png")

            # the wheel over the terminal scrolls its 300 lines back
            async def settled() -> Image.Image | None:
                before = region(await screenshot(pool, desktop), first)
                after = region(await screenshot(pool, desktop), first)
                return before if not ImageChops.difference(before, after).getbbox() else None

            bottom = await until(settled, "the terminal did not settle")
            x, y = center(first)
            await call(pool, "scroll", sandbox_id=desktop, direction="up", amount=5, x=x, y=y)

            async def scrolled() -> bool:
                now = region(await screenshot(pool, desktop), first)
                return ImageChops.difference(bottom, now).getbbox() is not None

            await until(scrolled, "scrolling up did not move the terminal's text")

            # a click gives the focus back to the first terminal
            second = await open_xterm(pool, desktop)
            assert second["id"] != first["id"]
            corner = (first["x"] + 10, first["y"] + 10)
            await call(pool, "left_click", sandbox_id=desktop, x=corner[0], y=corner[1])

            async def refocused() -> bool:
                windows = (await call(pool, "list_windows", sandbox_id=desktop))["windows"]
                return any(w["id"] == first["id"] and w["focused"] for w in windows)

            await until(refocused, "the click did not give the first terminal the focus")

            # clear errors, and the desktop keeps serving
            off = await fails(pool, "left_click", sandbox_id=desktop, x=1024, y=10)
            assert "off the screen" in off and "0..1023" in off
            assert "unknown key" in await fails(
                pool, "press_keys", sandbox_id=desktop, keys="hyper"
            )
            missing = await fails(pool, "launch", sandbox_id=desktop, application="no-such-app")
            assert "not installed" in missing
            sandbox = (await call(pool, "create_sandbox"))["sandbox_id"]
            assert "without a screen" in await fails(pool, "screenshot", sandbox_id=sandbox)
            await call(pool, "close_sandbox", sandbox_id=sandbox)

            [container] = desktops_of(docker_api, desktop)
            info = docker_api.inspect_container(container["Id"])
            assert info["HostConfig"]["NetworkMode"] == "none"
            await call(pool, "close_desktop", sandbox_id=desktop)
            assert not desktops_of(docker_api, desktop)

    anyio.run(scenario)


def http_get(url: str, **headers: str) -> httpx2.Response:
    return httpx2.get(url, headers=headers, follow_redirects=False, timeout=10)


def websocket_banner(url: str, cookie: str) -> bytes:
    """Open noVNC's websocket with the cookie; the first bytes the VNC server sends."""
    parts = urlsplit(url)
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    request = (
        f"GET /websockify HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Protocol: binary\r\nCookie: {cookie}\r\n\r\n"
    )
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(request.encode())
        data = b""
        while b"RFB" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 101"), data[:200]
    return data


def refused(url: str) -> bool:
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def test_the_live_view_needs_its_token_and_dies_with_the_desktop(
    gateway_name: str, docker_api: docker.APIClient
) -> None:
    async def scenario() -> None:
        async with e2b_server(gateway_name) as pool:
            desktop = (await call(pool, "create_desktop"))["sandbox_id"]
            url = (await call(pool, "get_stream_url", sandbox_id=desktop))["url"]
            page = url.split("?")[0]
            assert http_get(page).status_code == 403
            assert http_get(url.replace("token=", "token=x")).status_code == 403

            entered = http_get(url)
            assert entered.status_code == 302
            cookie = entered.headers["set-cookie"].split(";")[0]
            assert "HttpOnly" in entered.headers["set-cookie"]
            served = http_get(page, Cookie=cookie)
            assert served.status_code == 200
            assert "noVNC" in served.text
            assert b"RFB 003.008" in websocket_banner(url, cookie)

            await call(pool, "close_desktop", sandbox_id=desktop)
            assert refused(url)
            assert not desktops_of(docker_api, desktop)
            assert "closed" in await fails(pool, "get_stream_url", sandbox_id=desktop)

    anyio.run(scenario)


def test_two_desktops_do_not_see_each_other(
    gateway_name: str, docker_api: docker.APIClient
) -> None:
    async def scenario() -> None:
        async with e2b_server(gateway_name) as pool:
            one = await call(pool, "create_desktop", width=800, height=600)
            two = await call(pool, "create_desktop")
            a, b = one["sandbox_id"], two["sandbox_id"]
            [container_a], [container_b] = desktops_of(docker_api, a), desktops_of(docker_api, b)
            assert container_a["Id"] != container_b["Id"]
            assert urlsplit(one["url"]).port != urlsplit(two["url"]).port
            assert (await screenshot(pool, a)).size == (800, 600)

            # a's token opens nothing on b's port, and the other way round
            token_a = one["url"].split("token=")[1]
            b_with_a = two["url"].split("token=")[0] + "token=" + token_a
            assert http_get(b_with_a).status_code == 403

            await call(pool, "write_file", sandbox_id=a, path="secret.txt", content="only in a")
            assert "cannot read" in await fails(pool, "read_file", sandbox_id=b, path="secret.txt")
            seen = await call(pool, "run_command", sandbox_id=b, command="ls /home/user")
            assert "secret.txt" not in seen["stdout"]

            await call(pool, "close_desktop", sandbox_id=a)
            assert refused(one["url"])
            assert http_get(two["url"]).status_code == 302  # b's view lives on
            await call(pool, "close_desktop", sandbox_id=b)

    anyio.run(scenario)


@pytest.fixture
def desktop_gateway(tmp_path: Path, gateway_name: str) -> Iterator[str]:
    """`cua-gateway run` over HTTP with the shipped e2b entry: the README's path."""
    from ruamel.yaml import YAML  # noqa: PLC0415

    yaml = YAML(typ="rt")
    document = yaml.load((ROOT / "gateway.yml").read_text())
    document["gateway"]["name"] = gateway_name
    document["gateway"]["state_dir"] = str(tmp_path / "state")
    entry = document["servers"]["e2b"]
    entry["build"]["context"] = str(ROOT / entry["build"]["context"])
    document["servers"] = {"e2b": entry}
    document.pop("auth", None)  # loopback, no token: the README's first command
    config = tmp_path / "gateway.yml"
    with config.open("w") as f:
        yaml.dump(document, f)
    with http_gateway(config, free_port(), {"PATH": "/usr/bin:/bin"}) as base:
        yield base


def test_an_mcp_client_gets_a_live_desktop_url_from_the_gateway(desktop_gateway: str) -> None:
    async def scenario() -> None:
        async with (
            streamable_http_client(f"{desktop_gateway}/mcp") as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            created = await session.call_tool("create_desktop", {})
            assert not created.is_error
            artifact = created.structured_content
            assert artifact is not None
            assert artifact["type"] == "desktop"
            entered = http_get(artifact["url"])
            assert entered.status_code == 302
            closed = await session.call_tool(
                "close_desktop", {"sandbox_id": artifact["sandbox_id"]}
            )
            assert not closed.is_error
            assert refused(artifact["url"])

    anyio.run(scenario)


@dataclass
class Site:
    """HTTP servers on 127.0.0.2, the host's loopback (the e2b server runs on the host's network,
    and its proxy connects out from there): the allowed one, and another."""

    allowed: int
    other: int
    seen: list[str] = field(default_factory=list)  # "PORT PATH" of each request served


@pytest.fixture
def site() -> Iterator[Site]:
    seen: list[str] = []

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            port = self.server.server_address[1]
            seen.append(f"{port} {self.path}")
            body = f"the page at {port}{self.path}\n".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    servers = [http.server.ThreadingHTTPServer(("127.0.0.2", 0), Page) for _ in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield Site(servers[0].server_address[1], servers[1].server_address[1], seen)
    for server in servers:
        server.shutdown()
        server.server_close()


# In the desktop: GET argv[1] with urllib (proxies from the environment, or argv[2] when given);
# prints "STATUS BODY", or "unreachable ERROR".
FETCH = """
import sys, urllib.error, urllib.request
proxies = {"http": sys.argv[2]} if len(sys.argv) > 2 else None
opener = urllib.request.build_opener(urllib.request.ProxyHandler(proxies))
try:
    with opener.open(sys.argv[1], timeout=10) as response:
        print(response.status, response.read().decode().strip())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode().strip())
except OSError as e:
    print("unreachable", getattr(e, "reason", e))
"""

# In the desktop: connect to argv[1]:argv[2] directly; prints "reached" or "unreachable ERROR".
CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), 5).close()
    print("reached")
except OSError as e:
    print("unreachable", e)
"""


async def python_in(pool: ServerPool, desktop: str, code: str, *args: str) -> str:
    command = shlex.join(["python3", "-c", code, *args])
    ran = await call(pool, "run_command", sandbox_id=desktop, command=command)
    assert ran["exit_code"] == 0, ran
    return str(ran["stdout"]).strip()


def agent_execs(api: docker.APIClient, container: str) -> list[str]:
    """The running execs in `container` that listen for the egress proxy (python3 ... 3128)."""
    found = []
    for exec_id in api.inspect_container(container)["ExecIDs"] or []:
        info = api.exec_inspect(exec_id)
        if info["Running"] and "3128" in info["ProcessConfig"]["arguments"]:
            found.append(exec_id)
    return found


def test_a_desktop_reaches_only_its_allowlisted_hosts_through_its_proxy(
    gateway_name: str, docker_api: docker.APIClient, site: Site
) -> None:
    allowed = f"127.0.0.2:{site.allowed}"
    other = f"127.0.0.2:{site.other}"

    async def scenario() -> None:
        async with e2b_server(gateway_name) as pool:
            created = await call(pool, "create_desktop", allow_network=[allowed])
            desktop = created["sandbox_id"]
            assert created["network"] == [allowed]
            [container] = desktops_of(docker_api, desktop)
            info = docker_api.inspect_container(container["Id"])
            assert info["HostConfig"]["NetworkMode"] == "none"  # only the proxy goes out
            assert "http_proxy=http://127.0.0.1:3128" in info["Config"]["Env"]

            page = await python_in(pool, desktop, FETCH, f"http://{allowed}/hello")
            assert page == f"200 the page at {site.allowed}/hello"
            refused = await python_in(pool, desktop, FETCH, f"http://{other}/secret")
            assert refused == f"403 {other} is not on this desktop's egress allowlist"
            direct = await python_in(pool, desktop, CONNECT, "127.0.0.2", str(site.allowed))
            assert direct.startswith("unreachable"), direct

            # a desktop without an allowlist has no network at all, nor a proxy
            closed = (await call(pool, "create_desktop"))["sandbox_id"]
            env = await call(pool, "run_command", sandbox_id=closed, command="env")
            assert "proxy" not in env["stdout"].lower()
            for via in ([], ["http://127.0.0.1:3128"]):
                got = await python_in(pool, closed, FETCH, f"http://{allowed}/x", *via)
                assert got.startswith("unreachable"), got
            direct = await python_in(pool, closed, CONNECT, "127.0.0.2", str(site.allowed))
            assert direct.startswith("unreachable"), direct
            await call(pool, "close_desktop", sandbox_id=closed)
            assert site.seen == [f"{site.allowed} /hello"]

            # the proxy's agent ends with the desktop
            [agent] = agent_execs(docker_api, container["Id"])
            await call(pool, "close_desktop", sandbox_id=desktop)
            assert not desktops_of(docker_api, desktop)
            with pytest.raises(docker.errors.NotFound):
                docker_api.exec_inspect(agent)

    anyio.run(scenario)


def test_a_malformed_allowlist_entry_is_a_clear_error_and_makes_no_desktop(
    gateway_name: str, docker_api: docker.APIClient
) -> None:
    def desktops() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = docker_api.containers(
            all=True,
            filters={"label": [LABEL_DESKTOP, f"io.cua-gateway.gateway={gateway_name}"]},
        )
        return found

    async def scenario() -> None:
        async with e2b_server(gateway_name) as pool:
            for entry, why in [
                ("http://example.com/", "without a scheme, a path or spaces"),
                ("example.com:99999", "the port must be a number in 1-65535"),
                ("10.0.0.0/8", "networks are not supported"),
            ]:
                message = await fails(pool, "create_desktop", allow_network=["example.com", entry])
                assert f"egress allowlist entry {entry!r}" in message, message
                assert why in message, message
            assert not desktops()

    anyio.run(scenario)
