"""The shipped playwright server, started by the gateway as a container, drives a real chromium
against a page this test serves on loopback."""

from __future__ import annotations

import base64
import re
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anyio
import docker
import pytest

from cua_gateway.downstream.pool import ServerPool
from cua_gateway.runtime.images import ensure_image
from tests.e2e.conftest import shipped_server
from tests.integration.conftest import ready, running, text_of

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

BUILD_TIMEOUT = 540.0  # seconds: the first run builds the image (apt installs chromium)
CALL_TIMEOUT = 60.0  # seconds for one tool call (the first one starts chromium)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BACKGROUND = (0xFF, 0x00, 0x80)  # the page's colour, looked for in the screenshot
PAGE = b"""<!doctype html>
<html><head><title>cua e2e</title></head>
<body style="background: #ff0080">
<h1 id="status">Waiting for a press</h1>
<button onclick="document.getElementById('status').textContent = 'Pressed by the browser'">
Press me</button>
</body></html>
"""


@dataclass
class ServedPage:
    """A page with a button, served by the test on 127.0.0.1; remembers who fetched it."""

    server: ThreadingHTTPServer
    user_agents: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/"


@pytest.fixture
def page() -> Iterator[ServedPage]:
    served: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/":
                self.send_error(404)
                return
            served.append(self.headers.get("User-Agent", ""))
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(PAGE)))
            self.end_headers()
            self.wfile.write(PAGE)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ServedPage(server, served)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def call(pool: ServerPool, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await pool.request(
        "tools/call", {"name": tool, "arguments": arguments}, timeout=CALL_TIMEOUT
    )
    assert not result.get("isError"), text_of(result)
    return result


def png_facts(data: bytes) -> tuple[int, int, tuple[int, ...]]:
    """Width, height and top-left pixel of a PNG, after checking every chunk's CRC and that the
    image data inflates to exactly the size the header announces."""
    assert data[:8] == PNG_SIGNATURE
    pos, idat, header = 8, b"", b""
    while True:
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r} chunk"
        pos += 12 + length
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    assert pos == len(data), "bytes after IEND"
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8
    channels = {2: 3, 6: 4}[colour]  # RGB or RGBA
    pixels = zlib.decompress(idat)
    assert len(pixels) == height * (1 + width * channels)
    # Row 0's first pixel has no left or upper neighbour, so every PNG filter leaves it as is.
    return width, height, tuple(pixels[1 : 1 + channels])


def test_browser_reads_clicks_and_screenshots_a_page_served_on_loopback(
    docker_api: docker.APIClient, gateway_name: str, page: ServedPage
) -> None:
    loaded = shipped_server("playwright", gateway_name, {})
    config = loaded.config.servers["playwright"]

    async def scenario() -> None:
        with anyio.fail_after(BUILD_TIMEOUT):
            await ensure_image(docker_api, "playwright", config)
        async with running(loaded) as supervisor:
            pool = supervisor.pool("playwright")
            await ready(pool)
            # The seed's capability names (browser.navigate, …) all exist as Playwright tools.
            tools = {tool["name"] for tool in pool.tools}
            assert config.capabilities is not None
            assert {name.replace(".", "_") for name in config.capabilities} <= tools

            navigated = text_of(await call(pool, "browser_navigate", url=page.url))
            assert page.url in navigated
            assert len(page.user_agents) == 1
            assert "Chrome" in page.user_agents[0]  # chromium itself fetched the page

            before = text_of(await call(pool, "browser_snapshot"))
            assert 'heading "Waiting for a press"' in before
            button = re.search(r'button "Press me" \[ref=(e\d+)\]', before)
            assert button is not None, before

            await call(pool, "browser_click", element="Press me button", target=button[1])
            after = text_of(await call(pool, "browser_snapshot"))
            assert 'heading "Pressed by the browser"' in after
            assert "Waiting for a press" not in after

            shot = await call(pool, "browser_take_screenshot", type="png")
            images = [part for part in shot["content"] if part.get("type") == "image"]
            assert len(images) == 1
            assert images[0]["mimeType"] == "image/png"
            width, height, top_left = png_facts(base64.b64decode(images[0]["data"]))
            assert 320 <= width <= 4096
            assert 200 <= height <= 4096
            assert top_left[:3] == BACKGROUND

    anyio.run(scenario)
