"""A desktop session of the `local` backend: a sandbox container running the desktop image.

The image (`servers/e2b/desktop/`) runs Xvfb on display :0, fluxbox, x11vnc on 127.0.0.1:5900
and websockify serving noVNC on 127.0.0.1:6080, all inside the container, which has no network.
The mouse, keyboard and windows are driven with xdotool and wmctrl, screenshots taken with
ImageMagick's `import`, each a `docker exec` with an argv list (no shell parses user text).
`launch` takes a program and its arguments, split as a shell would split them. The container's
environment has DISPLAY=:0, so the sandbox's own commands reach the display too.

The live view is not made here: `desktop/view.py` relays a host port to `VIEW_PORT` inside
`container_id`, and is handed to the desktop as `live_view`, which `stream_url` calls.
"""

from __future__ import annotations

import shlex
from collections.abc import Awaitable, Callable
from functools import partial

import anyio
import docker
import docker.errors
import requests

from cua_e2b.backends import Limits, SandboxError
from cua_e2b.backends._exec import Output
from cua_e2b.backends.local import WORKDIR, LocalSandbox
from cua_e2b.desktop import Button, Direction, Screen, Window
from cua_e2b.desktop._xdotool import BUTTONS, WHEEL, chord, parse_location, parse_windows

VIEW_PORT = 6080  # noVNC (websockify) inside the container, on 127.0.0.1
READY = ["desktop-session", "--ready"]  # succeeds once the display, VNC and noVNC answer
READY_POLL = 0.1  # seconds between readiness checks
ACTION_TIMEOUT = 10.0  # seconds for one mouse, keyboard or window action
SCREENSHOT_TIMEOUT = 20.0  # seconds to capture (and scale) the screen
MAX_SCREENSHOT = 64 * 2**20  # bytes of PNG read back at most
TYPE_DELAY = 12  # milliseconds between typed characters
MAX_TYPE = 10_000  # characters type_text takes at once
MAX_NOTCHES = 100  # wheel notches one scroll turns at most
DRAG_STEP = "0.05"  # seconds xdotool holds still after pressing and before releasing
MIN_SCREEN = (320, 240)  # pixels, width and height
MAX_SCREEN = (3840, 2160)
LOG_LINES = 5  # lines of a failed desktop's own output told in its error

LiveView = Callable[[], Awaitable[str]]
"""Returns the live view's URL (with its access token), starting the relay if needed."""

# Start a program detached from the exec: its own session, no terminal, output discarded.
LAUNCH = (
    'command -v -- "$1" >/dev/null 2>&1 || { echo "$1 is not installed" >&2; exit 127; };'
    ' setsid "$@" </dev/null >/dev/null 2>&1 &'
)
WINDOWS = "wmctrl -lG; echo; xdotool getactivewindow 2>/dev/null || true"


class LocalDesktop(LocalSandbox):
    """A `Desktop`: a `LocalSandbox` whose container shows a screen of `screen`'s size."""

    def __init__(
        self,
        api: docker.APIClient,
        container: str,
        limits: Limits,
        screen: Screen,
        live_view: LiveView | None = None,
    ) -> None:
        super().__init__(api, container, limits)
        self._screen = screen
        self.live_view = live_view
        self._closers: list[Callable[[], Awaitable[None]]] = []

    def on_close(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Run `closer` when the desktop closes, before its container goes (e.g. its view)."""
        self._closers.append(closer)

    async def close(self) -> None:
        while self._closers:
            await self._closers.pop()()
        await super().close()

    @property
    def screen(self) -> Screen:
        return self._screen

    @property
    def container_id(self) -> str:
        return self._container

    @property
    def view_port(self) -> int:
        """The port noVNC listens on inside the container (on its loopback)."""
        return VIEW_PORT

    async def wait_ready(self, timeout: float) -> None:
        """Return once the desktop answers; SandboxError if it does not within `timeout`."""
        out: Output | None = None
        with anyio.move_on_after(timeout):
            while True:
                out = await self._exec(READY, None, WORKDIR, ACTION_TIMEOUT)
                if out.exit_code == 0:
                    return
                await anyio.sleep(READY_POLL)
        detail = f": {_message(out)}" if out is not None else ""
        raise SandboxError(f"the desktop did not come up within {timeout:g} s{detail}")

    async def last_output(self) -> str:
        """The last lines the container wrote (its entrypoint's complaints), on one line; ""
        when they cannot be read."""
        try:
            return await anyio.to_thread.run_sync(
                partial(_tail, self._api, self._container), abandon_on_cancel=True
            )
        except (docker.errors.DockerException, requests.RequestException):
            return ""

    async def screenshot(self, scale: float = 1.0) -> bytes:
        if not 0 < scale <= 1:
            raise SandboxError(f"scale must be more than 0 and at most 1 (got {scale:g})")
        argv = ["import", "-silent", "-window", "root"]
        if scale < 1:
            width = max(1, round(self._screen.width * scale))
            height = max(1, round(self._screen.height * scale))
            argv += ["-resize", f"{width}x{height}!"]
        out = await self._exec(
            [*argv, "png:-"], None, WORKDIR, SCREENSHOT_TIMEOUT, limit=MAX_SCREENSHOT
        )
        if out.exit_code != 0 or not out.stdout.startswith(b"\x89PNG"):
            raise SandboxError(f"cannot take a screenshot: {_message(out)}")
        if out.dropped[0]:
            raise SandboxError(f"the screenshot is larger than {MAX_SCREENSHOT} bytes")
        return out.stdout

    async def click(self, x: int, y: int, button: Button = "left", double: bool = False) -> None:
        self._screen.check(x, y)
        number = _button(button)
        repeat = ["--repeat", "2"] if double else []
        await self._xdotool("mousemove", str(x), str(y), "click", *repeat, number)

    async def move_mouse(self, x: int, y: int) -> None:
        self._screen.check(x, y)
        await self._xdotool("mousemove", str(x), str(y))

    async def drag(self, start: tuple[int, int], end: tuple[int, int]) -> None:
        self._screen.check(*start)
        self._screen.check(*end)
        await self._xdotool(
            "mousemove", str(start[0]), str(start[1]), "mousedown", "1",
            "sleep", DRAG_STEP, "mousemove", str(end[0]), str(end[1]),
            "sleep", DRAG_STEP, "mouseup", "1",
        )  # fmt: skip

    async def scroll(self, direction: Direction, amount: int, x: int | None, y: int | None) -> None:
        notch = WHEEL.get(direction)
        if notch is None:
            raise SandboxError(f"direction must be one of {', '.join(WHEEL)} (got {direction!r})")
        if not 1 <= amount <= MAX_NOTCHES:
            raise SandboxError(f"amount must be 1..{MAX_NOTCHES} notches (got {amount})")
        if (x is None) != (y is None):
            raise SandboxError("give both x and y, or neither")
        move = []
        if x is not None and y is not None:
            self._screen.check(x, y)
            move = ["mousemove", str(x), str(y)]
        await self._xdotool(*move, "click", "--repeat", str(amount), "--delay", "10", notch)

    async def type_text(self, text: str) -> None:
        if len(text) > MAX_TYPE:
            raise SandboxError(f"type_text takes at most {MAX_TYPE} characters at once")
        if not text:
            return
        # The text travels on stdin: no argument parsing, no length limit on the command line.
        argv = ["xdotool", "type", "--delay", str(TYPE_DELAY), "--file", "-"]
        wait = ACTION_TIMEOUT + len(text) * TYPE_DELAY / 1000 * 2
        self._check(await self._exec(argv, text.encode(), WORKDIR, wait), "type")

    async def press_keys(self, keys: list[str]) -> None:
        await self._xdotool("key", chord(keys))

    async def launch(self, application: str) -> None:
        try:
            argv = shlex.split(application)
        except ValueError as e:
            raise SandboxError(f"cannot read the command {application!r}: {e}") from e
        if not argv:
            raise SandboxError("name the application to launch")
        out = await self._exec(["sh", "-c", LAUNCH, "sh", *argv], None, WORKDIR, ACTION_TIMEOUT)
        if out.exit_code == 127:
            raise SandboxError(
                f"{argv[0]} is not installed in the desktop image; install it in the image "
                "(servers/e2b/desktop/Dockerfile) or launch one that is, such as xterm"
            )
        self._check(out, f"launch {argv[0]}")

    async def list_windows(self) -> list[Window]:
        out = await self._exec(["sh", "-c", WINDOWS], None, WORKDIR, ACTION_TIMEOUT)
        self._check(out, "list the windows")
        listing, _, active = out.stdout.decode(errors="replace").rpartition("\n\n")
        return parse_windows(listing, active)

    async def pointer(self) -> tuple[int, int]:
        """Where the mouse pointer is."""
        out = await self._exec(["xdotool", "getmouselocation"], None, WORKDIR, ACTION_TIMEOUT)
        self._check(out, "find the pointer")
        return parse_location(out.stdout.decode(errors="replace"))

    async def stream_url(self) -> str:
        if self.live_view is None:
            raise SandboxError("this desktop has no live view")
        return await self.live_view()

    async def _xdotool(self, *args: str) -> None:
        out = await self._exec(["xdotool", *args], None, WORKDIR, ACTION_TIMEOUT)
        self._check(out, args[0] if args else "xdotool")

    def _check(self, out: Output, what: str) -> None:
        if not out.complete:
            raise SandboxError(f"{what}: the desktop did not answer in time")
        if out.exit_code != 0:
            raise SandboxError(f"{what} failed: {_message(out)}")


def check_screen(screen: Screen) -> None:
    """SandboxError unless a local desktop can have a screen of `screen`'s size."""
    (min_w, min_h), (max_w, max_h) = MIN_SCREEN, MAX_SCREEN
    if not (min_w <= screen.width <= max_w and min_h <= screen.height <= max_h):
        raise SandboxError(
            f"a desktop screen of {screen.width}x{screen.height} is not possible: the width "
            f"must be {min_w}..{max_w} and the height {min_h}..{max_h}"
        )


def _tail(api: docker.APIClient, container: str) -> str:
    logs = api.logs(container, stdout=True, stderr=True, tail=LOG_LINES)
    return " | ".join(line.strip() for line in logs.decode(errors="replace").splitlines() if line)


def _button(button: Button) -> str:
    number = BUTTONS.get(button)
    if number is None:
        raise SandboxError(f"button must be one of {', '.join(BUTTONS)} (got {button!r})")
    return number


def _message(out: Output) -> str:
    lines = out.stderr.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else f"exit status {out.exit_code}"
