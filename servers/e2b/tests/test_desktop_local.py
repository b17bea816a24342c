"""Desktop sessions of the local backend, against real containers of the desktop image: the
screen, screenshots, the mouse, the keyboard, windows, and the container's lockdown.

The image is built from servers/e2b/desktop by the gateway's own builder when it is missing or
its folder changed. Every test's containers carry sandbox ids made for it; teardown removes any
that are left, even when the test failed, and the backend removes its own when it stops.
"""

from __future__ import annotations

import re
import secrets
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import anyio
import docker
import docker.errors
import pytest
from cua_e2b.backends import Limits, SandboxError
from cua_e2b.backends.local import LABEL_SANDBOX, LocalBackend
from cua_e2b.desktop import Screen, Window
from cua_e2b.desktop.local import LocalDesktop

from cua_gateway.config.server import BuildSpec, ServerConfig
from cua_gateway.runtime.images import ensure_image

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(300),  # a first build of the image takes a minute or two
]

T = TypeVar("T")
CONTEXT = Path(__file__).resolve().parents[1] / "desktop"
IMAGE = "cua-gateway/desktop:latest"
BASE_IMAGE = "cua-gateway/base:bookworm"
SANDBOX_IMAGE = "cua-gateway/base:bookworm"  # plain sandboxes are not used here
WAIT = 20.0  # seconds for something on the desktop to happen
POLL = 0.1  # seconds between looks at it
SCREEN = Screen(800, 600)


@pytest.fixture(scope="module")
def docker_api() -> Iterator[docker.APIClient]:
    api = docker.APIClient(version="auto", timeout=120)
    api.ping()
    yield api
    api.close()


@pytest.fixture(scope="module")
def desktop_image(docker_api: docker.APIClient) -> str:
    config = ServerConfig(
        image=IMAGE, build=BuildSpec(context=str(CONTEXT), args={"BASE_IMAGE": BASE_IMAGE})
    )
    return anyio.run(ensure_image, docker_api, "desktop", config)


@pytest.fixture
def ids(docker_api: docker.APIClient) -> Iterator[Callable[[], str]]:
    """New sandbox ids; teardown removes every container carrying one of them."""
    made: list[str] = []

    def new() -> str:
        made.append("test-desktop-" + secrets.token_hex(4))
        return made[-1]

    yield new
    for sandbox_id in made:
        filters = {"label": [f"{LABEL_SANDBOX}={sandbox_id}"]}
        for c in docker_api.containers(all=True, filters=filters):
            docker_api.remove_container(c["Id"], force=True)


@asynccontextmanager
async def desktop_of(
    image: str, sandbox_id: str, screen: Screen = SCREEN
) -> AsyncIterator[LocalDesktop]:
    backend = LocalBackend(SANDBOX_IMAGE, Limits(), desktop_image=image)
    async with backend.run():
        desktop = await backend.create_desktop(sandbox_id, screen)
        try:
            yield desktop
        finally:
            await desktop.close()


async def until(check: Callable[[], Awaitable[T | None]], what: str) -> T:
    """`check`'s first answer that is not None (or False), polled for at most WAIT seconds."""
    with anyio.fail_after(WAIT):
        while True:
            found = await check()
            if found:
                return found
            await anyio.sleep(POLL)
    raise AssertionError(what)  # pragma: no cover (fail_after raises first)


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


async def shell(desktop: LocalDesktop, command: str) -> str:
    execution = await desktop.run_command(command, None, 10)
    assert execution.exit_code == 0, execution
    return execution.stdout


async def open_xterm(desktop: LocalDesktop, command: str = "") -> str:
    """Launch an xterm (running `command`), wait until it is the focused window: its id."""
    title = "xterm-" + secrets.token_hex(3)
    await desktop.launch(f"xterm -title {title}" + (f" -e {command}" if command else ""))

    async def focused() -> str | None:
        windows = await desktop.list_windows()
        mine = [w for w in windows if w.title == title]
        if mine and not mine[0].focused:  # fluxbox focuses on click
            w = mine[0]
            await desktop.click(w.x + w.width // 2, w.y + w.height // 2)
        return mine[0].id if mine and mine[0].focused else None

    return await until(focused, f"{title} did not become the focused window")


def test_the_screen_has_the_size_asked_for_and_the_sandbox_tools_work(
    desktop_image: str, ids: Callable[[], str]
) -> None:
    async def scenario() -> None:
        async with desktop_of(desktop_image, ids(), Screen(1024, 640)) as desktop:
            assert desktop.screen == Screen(1024, 640)
            assert await shell(desktop, "xdotool getdisplaygeometry") == "1024 640\n"
            ran = await desktop.run_code("print(6 * 7)", 10)
            assert ran.stdout == "42\n"
            await desktop.write_file("notes/a.txt", b"hi")
            assert await desktop.read_file("/home/user/notes/a.txt", 100) == b"hi"

    anyio.run(scenario)


def test_a_screenshot_is_a_png_of_the_screen_and_scales(
    desktop_image: str, ids: Callable[[], str]
) -> None:
    async def scenario() -> None:
        async with desktop_of(desktop_image, ids()) as desktop:
            assert png_size(await desktop.screenshot()) == (800, 600)
            assert png_size(await desktop.screenshot(0.5)) == (400, 300)
            assert png_size(await desktop.screenshot(0.33)) == (264, 198)
            with pytest.raises(SandboxError, match="scale must be"):
                await desktop.screenshot(1.5)

    anyio.run(scenario)


def test_a_launched_xterm_is_listed_with_its_geometry_and_focus(
    desktop_image: str, ids: Callable[[], str]
) -> None:
    async def scenario() -> None:
        async with desktop_of(desktop_image, ids()) as desktop:
            with anyio.fail_after(5):  # launching returns at once, not when the program ends
                assert await desktop.list_windows() == []
                window_id = await open_xterm(desktop)
            [window] = [w for w in await desktop.list_windows() if w.id == window_id]
            assert window.focused
            assert window.width > 100 and window.height > 100
            assert 0 <= window.x < 800 and 0 <= window.y < 600

    anyio.run(scenario)


def test_a_program_that_is_not_installed_is_not_launched(
    desktop_image: str, ids: Callable[[], str]
) -> None:
    async def scenario() -> None:
        async with desktop_of(desktop_image, ids()) as desktop:
            with pytest.raises(SandboxError, match="firefox is not installed in the desktop image"):
                await desktop.launch("firefox --new-window")
            with pytest.raises(SandboxError, match="name the application"):
                await desktop.launch("  ")

    anyio.run(scenario)


def test_typing_a_command_in_the_focused_xterm_runs_it(
    desktop_image: str, ids: Callable[[], str]
) -> None:
    async def scenario() -> None:
        async with desktop_of(desktop_image, ids()) as desktop:
            await open_xterm(desktop)
            await desktop.type_text("echo 'hello $USER;' > /home/user/out.txt")
            await desktop.press_keys(["enter"])

            async def written() -> bytes | None:
                listed = {e.name for e in await desktop.list_files("/home/user")}
                return await desktop.read_file("out.txt", 100) if "out.txt" in listed else None

            assert await until(written, "out.txt was not written") == b"hello $USER;\n"

    anyio.run(scenario)


def test_the_pointer_goes_where_it_is_moved_clicked_and_dragged(
    desktop_image: str, ids: Callable[[], str]
) -> None:
    async def scenario() -> None:
        async with desktop_of(desktop_image, ids()) as desktop:
            await desktop.move_mouse(123, 45)
            location = await shell(desktop, "xdotool getmouselocation")
            assert re.match(r"x:123 y:45 ", location), location
            await desktop.click(799, 599, "right")
            assert await desktop.pointer() == (799, 599)
            await desktop.drag((10, 10), (300, 200))
            assert await desktop.pointer() == (300, 200)

    anyio.run(scenario)


def test_off_screen_coordinates_are_refused_with_the_screen_bounds(
    desktop_image: str, ids: Callable[[], str]
) -> None:
    async def scenario() -> None:
        async with desktop_of(desktop_image, ids()) as desktop:
            bounds = r"\(800, 10\) is off the screen: x must be in 0..799 and y in 0..599"
            with pytest.raises(SandboxError, match=bounds):
                await desktop.click(800, 10)
            with pytest.raises(SandboxError, match="off the screen"):
                await desktop.move_mouse(-1, 0)
            with pytest.raises(SandboxError, match="off the screen"):
                await desktop.drag((10, 10), (10, 600))
            with pytest.raises(SandboxError, match="off the screen"):
                await desktop.scroll("down", 3, 5, 1000)
            with pytest.raises(SandboxError, match="both x and y"):
                await desktop.scroll("down", 3, 5, None)
            assert await desktop.pointer() != (10, 10)  # nothing refused was half done

    anyio.run(scenario)


def test_unknown_keys_are_refused_naming_the_accepted_ones(
    desktop_image: str, ids: Callable[[], str]
) -> None:
    async def scenario() -> None:
        async with desktop_of(desktop_image, ids()) as desktop:
            with pytest.raises(SandboxError, match=r"unknown key 'hyper'; the keys are ctrl, alt"):
                await desktop.press_keys(["ctrl", "hyper"])
            with pytest.raises(SandboxError, match="at least one key"):
                await desktop.press_keys([])
            await desktop.press_keys(["ctrl", "alt", "F4"])
            await desktop.press_keys(["+"])

    anyio.run(scenario)


def test_scrolling_an_xterm_full_of_output_moves_its_text(
    desktop_image: str, ids: Callable[[], str]
) -> None:
    async def scenario() -> None:
        async with desktop_of(desktop_image, ids()) as desktop:
            window_id = await open_xterm(desktop, "sh -c 'seq 500; touch done; exec cat'")
            await until(lambda: exists(desktop, "/home/user/done"), "the output did not end")
            [xterm] = [w for w in await desktop.list_windows() if w.id == window_id]

            async def settled() -> str | None:
                first = await pixels(desktop, xterm)
                return first if await pixels(desktop, xterm) == first else None

            async def looks(same: bool, as_: str) -> bool:
                return (await pixels(desktop, xterm) == as_) == same

            bottom = await until(settled, "the xterm did not settle")
            await desktop.scroll("up", 5, xterm.x + 50, xterm.y + 50)
            await until(lambda: looks(False, bottom), "scrolling up changed nothing")
            await desktop.scroll("down", 5, None, None)  # where the pointer is
            await until(lambda: looks(True, bottom), "scrolling down did not go back")

    anyio.run(scenario)


def test_the_desktop_is_locked_down_and_removed_on_close(
    desktop_image: str, ids: Callable[[], str], docker_api: docker.APIClient
) -> None:
    async def scenario() -> None:
        async with desktop_of(desktop_image, ids()) as desktop:
            info = docker_api.inspect_container(desktop.container_id)
            host = info["HostConfig"]
            assert host["NetworkMode"] == "none"
            assert host["ReadonlyRootfs"] is True
            assert host["CapDrop"] == ["ALL"]
            assert (host["Memory"], host["NanoCpus"], host["PidsLimit"]) == (2**30, 10**9, 256)
            assert await shell(desktop, "ls /sys/class/net") == "lo\n"
            assert await shell(desktop, "id -u") == "1000\n"
            assert desktop.view_port == 6080
            url = await desktop.stream_url()  # the backend opened its live view
            assert url.startswith("http://127.0.0.1:")
            await desktop.close()
            with pytest.raises(docker.errors.NotFound):
                docker_api.inspect_container(desktop.container_id)

    anyio.run(scenario)


def test_a_missing_desktop_image_says_how_to_build_it(ids: Callable[[], str]) -> None:
    async def scenario() -> None:
        with pytest.raises(ExceptionGroup) as caught:  # raised inside the backend's task group
            async with desktop_of("cua-gateway/no-such-desktop:none", ids()):
                pass
        assert caught.group_contains(SandboxError, match=r"not present: build it with `docker b")

    anyio.run(scenario)


async def exists(desktop: LocalDesktop, path: str) -> bool:
    return (await desktop.run_command(f"test -e {path}", None, 5)).exit_code == 0


async def pixels(desktop: LocalDesktop, window: Window) -> str:
    """A digest of a window's pixels on a screenshot (the rest of the screen has a clock)."""
    await desktop.write_file("shot.png", await desktop.screenshot())
    crop = f"{window.width}x{window.height}+{window.x}+{window.y}"
    return await shell(desktop, f"convert shot.png -crop {crop} +repage rgb:- | md5sum")
