"""The `e2b` desktop: E2B Desktop in the cloud, through the `e2b-desktop` SDK.

The SDK (e2b-desktop 2.7) has no async API: its Sandbox extends the sync `e2b.Sandbox`, so every
call runs in a worker thread. Commands, code and files are the `e2b` backend's CloudSandbox over
the desktop's `commands` and `files`. Mapping: create → Sandbox.create(template, resolution,
timeout=lifetime, metadata, api_key), then get_screen_size(); click → move_mouse(x, y), then
left_click() / right_click() / middle_click() / double_click() without coordinates (the SDK skips
the move when x or y is 0); drag → drag(start, end); scroll → scroll(direction, amount) (left and
right: xdotool buttons 6 and 7); type_text → write(text); press_keys → press([SDK key names]);
launch → launch(application) (gtk-launch); screenshot → screenshot() (PNG, scaled here with
Pillow); list_windows → one xprop/xdotool script through commands.run (the SDK's window calls give
ids and titles, not where the windows are); stream_url → stream.start(require_auth=True)
once, then stream.get_url(auth_key=stream.get_auth_key()); close → kill().
"""

from __future__ import annotations

import functools
import io
import logging
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import anyio
import e2b

from cua_e2b.backends import Entry, Execution, SandboxError
from cua_e2b.backends.e2b import CloudSandbox
from cua_e2b.desktop import Button, Direction, Screen, Window
from cua_e2b.desktop._xdotool import ACCEPTED, BUTTONS, KEYS, MAX_KEYS, WHEEL

logger = logging.getLogger(__name__)
T = TypeVar("T")

CREATE_TIMEOUT = 180.0  # seconds: the sandbox, then Xvfb (the SDK waits ≤ 10 s) and XFCE (≤ 60 s)
ACTION_TIMEOUT = 30.0  # seconds for one mouse, keyboard, screenshot or window call
TYPE_TIMEOUT_PER_CHAR = 0.1  # seconds more per typed character (the SDK types 1 per 75 ms)
STREAM_TIMEOUT = 60.0  # seconds to start the live view (the SDK waits ≤ 10 s for noVNC)
APPLICATION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")  # a desktop entry's name

DesktopFactory = Callable[..., Any]  # e2b_desktop.Sandbox.create (sync)

# X keysyms (what the local desktop's key names in `_xdotool` stand for) → the SDK's key names.
# The SDK lowercases a name it does not know and hands it to xdotool as it is, which garbles
# most keysyms (Prior, BackSpace), so every keysym goes by the SDK's own name for it.
_SDK_NAMES = {
    "Control_L": "ctrl",
    "Alt_L": "alt",
    "Shift_L": "shift",
    "Super_L": "super",
    "Return": "enter",
    "Escape": "esc",
    "Tab": "tab",
    "BackSpace": "backspace",
    "Delete": "delete",
    "Insert": "insert",
    "space": "space",
    "Up": "up",
    "Down": "down",
    "Left": "left",
    "Right": "right",
    "Prior": "page_up",
    "Next": "page_down",
    "Home": "home",
    "End": "end",
    "Menu": "menu",
    "Print": "print",
    **{f"F{n}": f"f{n}" for n in range(1, 13)},
}
# Punctuation by its keysym name: the SDK joins a chord with "+", so "+" cannot go as it is.
_PUNCTUATION = {
    " ": "space",
    "!": "exclam",
    '"': "quotedbl",
    "#": "numbersign",
    "$": "dollar",
    "%": "percent",
    "&": "ampersand",
    "'": "apostrophe",
    "(": "parenleft",
    ")": "parenright",
    "*": "asterisk",
    "+": "plus",
    ",": "comma",
    "-": "minus",
    ".": "period",
    "/": "slash",
    ":": "colon",
    ";": "semicolon",
    "<": "less",
    "=": "equal",
    ">": "greater",
    "?": "question",
    "@": "at",
    "[": "bracketleft",
    "\\": "backslash",
    "]": "bracketright",
    "^": "asciicircum",
    "_": "underscore",
    "`": "grave",
    "{": "braceleft",
    "|": "bar",
    "}": "braceright",
    "~": "asciitilde",
}

# The window manager's client windows (EWMH), without the desktop and the panels: one line each,
# "id x y width height focused title", tab-separated, the id in hex as wmctrl writes it. xprop
# and xdotool are in E2B's template.
WINDOWS_SCRIPT = r"""
command -v xprop >/dev/null && command -v xdotool >/dev/null ||
  { echo "the desktop has no xprop or xdotool" >&2; exit 127; }
clients=$(xprop -root _NET_CLIENT_LIST) && active=$(xprop -root _NET_ACTIVE_WINDOW) || exit 1
active=$(echo "$active" | sed -n 's/.*# \(0x[0-9a-fA-F]*\).*/\1/p')
for w in $(echo "$clients" | sed -n 's/.*# //p' | tr ',' ' '); do
  case $(xprop -id "$w" _NET_WM_WINDOW_TYPE 2>/dev/null) in *_DESKTOP*|*_DOCK*) continue;; esac
  geometry=$(xdotool getwindowgeometry --shell "$w" 2>/dev/null) || continue
  eval "$geometry"
  focused=0; [ "$((w))" = "$((${active:-0}))" ] && focused=1
  title=$(xdotool getwindowname "$w" 2>/dev/null | tr '\t\n' '  '); title=${title% }
  printf '0x%08x\t%s\t%s\t%s\t%s\t%s\t%s\n' \
    "$WINDOW" "$X" "$Y" "$WIDTH" "$HEIGHT" "$focused" "$title"
done
exit 0
"""


def sdk_chord(keys: list[str]) -> list[str]:
    """The SDK's names for keys pressed together (the local desktop's names, see `_xdotool`);
    SandboxError for a key the SDK cannot press. The SDK lowercases letters, so an upper-case
    letter is pressed with shift, as xdotool presses it."""
    if not keys:
        raise SandboxError("press_keys needs at least one key")
    if len(keys) > MAX_KEYS:
        raise SandboxError(f"at most {MAX_KEYS} keys can be pressed together")
    chord = [_sdk_key(key) for key in keys]
    if any(len(key) == 1 and key.isascii() and key.isupper() for key in keys):
        chord = ["shift", *(key for key in chord if key != "shift")]
    return chord


def _sdk_key(name: str) -> str:
    if len(name) == 1 and name.isascii():
        if name.isalnum():
            return name.lower()
        if name in _PUNCTUATION:
            return _PUNCTUATION[name]
    keysym = KEYS.get(name.strip().lower())
    if keysym in _SDK_NAMES:
        return _SDK_NAMES[keysym]
    raise SandboxError(
        f"unknown key {name!r}; the keys are {ACCEPTED} (in E2B's desktop, an ASCII one: "
        "type other text with type_text)"
    )


async def create_cloud_desktop(
    api_key: str,
    template: str | None,
    lifetime: int,
    resolution: tuple[int, int],
    metadata: Mapping[str, str],
    *,
    create: DesktopFactory | None = None,
) -> CloudDesktop:
    """A new E2B desktop (template None: E2B's `desktop`), ended by E2B after `lifetime` seconds.

    `create` stands in for `e2b_desktop.Sandbox.create`, imported only here, when the cloud is
    chosen. A desktop whose creation outlasts CREATE_TIMEOUT is killed once it arrives."""
    if create is None:
        from e2b_desktop import Sandbox  # type: ignore[import-untyped]  # noqa: PLC0415

        create = Sandbox.create
    width, height = resolution
    if width < 1 or height < 1:
        raise SandboxError(f"the resolution must be positive, got {width}x{height}")
    abandoned = threading.Event()

    def start() -> tuple[Any, Screen]:
        desktop = create(
            template=template,
            resolution=(width, height),
            timeout=lifetime,
            metadata=dict(metadata),
            api_key=api_key,
        )
        try:
            screen = Screen(*desktop.get_screen_size())
        except BaseException:
            _kill_quietly(desktop)
            raise
        if abandoned.is_set():  # nobody waits for it any more
            _kill_quietly(desktop)
        return desktop, screen

    try:
        desktop, screen = await _thread("creating the desktop", start, CREATE_TIMEOUT)
    except BaseException:
        abandoned.set()
        raise
    return CloudDesktop(desktop, screen)


class CloudDesktop:
    """A desktop session on an `e2b_desktop.Sandbox` (or a stand-in with its methods)."""

    def __init__(self, desktop: Any, screen: Screen) -> None:
        self._desktop = desktop
        self._screen = screen
        self._sandbox = CloudSandbox(_Awaited(desktop))
        self._input = anyio.Lock()  # one pointer and keyboard: actions never interleave
        self._stream = anyio.Lock()
        self._stream_url: str | None = None

    @property
    def screen(self) -> Screen:
        return self._screen

    @property
    def workdir(self) -> str:
        return self._sandbox.workdir

    async def run_command(self, command: str, cwd: str | None, timeout: float) -> Execution:
        return await self._sandbox.run_command(command, cwd, timeout)

    async def run_code(self, code: str, timeout: float) -> Execution:
        return await self._sandbox.run_code(code, timeout)

    async def write_file(self, path: str, data: bytes) -> str:
        return await self._sandbox.write_file(path, data)

    async def read_file(self, path: str, max_bytes: int) -> bytes:
        return await self._sandbox.read_file(path, max_bytes)

    async def list_files(self, path: str) -> list[Entry]:
        return await self._sandbox.list_files(path)

    async def close(self) -> None:
        await self._sandbox.close()

    async def screenshot(self, scale: float = 1.0) -> bytes:
        if not 0 < scale <= 1:
            raise SandboxError(f"scale must be more than 0 and at most 1, got {scale:g}")
        png = bytes(await _thread("the screenshot", self._desktop.screenshot))
        if scale == 1:
            return png
        return await anyio.to_thread.run_sync(_scaled, png, scale)

    async def click(self, x: int, y: int, button: Button = "left", double: bool = False) -> None:
        self._screen.check(x, y)
        async with self._input:
            await _thread("moving the mouse", functools.partial(self._desktop.move_mouse, x, y))
            if double and button == "left":
                await _thread("the double click", self._desktop.double_click)
            elif double:  # the SDK double-clicks the left button only; this is its command
                await self._xdotool("the double click", f"click --repeat 2 {BUTTONS[button]}")
            else:
                click = {
                    "left": self._desktop.left_click,
                    "right": self._desktop.right_click,
                    "middle": self._desktop.middle_click,
                }[button]
                await _thread(f"the {button} click", click)

    async def move_mouse(self, x: int, y: int) -> None:
        self._screen.check(x, y)
        async with self._input:
            await _thread("moving the mouse", functools.partial(self._desktop.move_mouse, x, y))

    async def drag(self, start: tuple[int, int], end: tuple[int, int]) -> None:
        self._screen.check(*start)
        self._screen.check(*end)
        async with self._input:
            await _thread("the drag", functools.partial(self._desktop.drag, start, end))

    async def scroll(self, direction: Direction, amount: int, x: int | None, y: int | None) -> None:
        if amount < 1:
            raise SandboxError(f"amount must be at least 1 notch, got {amount}")
        if (x is None) != (y is None):
            raise SandboxError("give both x and y, or neither (to scroll where the pointer is)")
        if x is not None and y is not None:
            self._screen.check(x, y)
        async with self._input:
            if x is not None and y is not None:
                move = functools.partial(self._desktop.move_mouse, x, y)
                await _thread("moving the mouse", move)
            if direction in ("up", "down"):
                scroll = functools.partial(self._desktop.scroll, direction, amount)
                await _thread("the scroll", scroll)
            else:
                wheel = WHEEL[direction]  # X's horizontal wheel, which the SDK lacks
                await self._xdotool("the scroll", f"click --repeat {amount} {wheel}")

    async def type_text(self, text: str) -> None:
        if not text:
            return
        timeout = ACTION_TIMEOUT + len(text) * TYPE_TIMEOUT_PER_CHAR
        async with self._input:
            await _thread("typing", functools.partial(self._desktop.write, text), timeout)

    async def press_keys(self, keys: list[str]) -> None:
        chord = sdk_chord(keys)
        async with self._input:
            await _thread(
                f"pressing {'+'.join(keys)}", functools.partial(self._desktop.press, chord)
            )

    async def launch(self, application: str) -> None:
        if not APPLICATION.match(application):
            raise SandboxError(
                f"{application!r} is not an application's name (its desktop entry, such as "
                "firefox or xfce4-terminal)"
            )
        await _thread(
            f"launching {application}", functools.partial(self._desktop.launch, application)
        )

    async def list_windows(self) -> list[Window]:
        result = await _thread(
            "listing the windows", functools.partial(self._desktop.commands.run, WINDOWS_SCRIPT)
        )
        windows = []
        for line in (result.stdout or "").splitlines():
            try:
                window_id, x, y, width, height, focused, title = line.split("\t", 6)
                sizes = int(x), int(y), int(width), int(height)
            except ValueError:  # not a line of WINDOWS_SCRIPT's
                continue
            windows.append(Window(window_id, title, *sizes, focused=focused == "1"))
        return windows

    async def stream_url(self) -> str:
        async with self._stream:
            if self._stream_url is None:
                self._stream_url = await _thread(
                    "starting the live view", self._start_stream, STREAM_TIMEOUT
                )
            return self._stream_url

    def _start_stream(self) -> str:
        stream = self._desktop.stream
        stream.start(require_auth=True)
        return str(stream.get_url(auth_key=stream.get_auth_key()))

    async def _xdotool(self, what: str, arguments: str) -> None:
        """An xdotool command for what the SDK lacks, run as the SDK runs its own."""
        await _thread(what, functools.partial(self._desktop.commands.run, f"xdotool {arguments}"))


class _Awaited:
    """A sync SDK object whose `commands.*`, `files.*` and `kill()` are awaited, each in a worker
    thread: what CloudSandbox expects of the async SDK (the two have the same signatures)."""

    def __init__(self, target: Any) -> None:
        self._target = target

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._target, name)
        if name in ("commands", "files"):
            return _Awaited(found)

        async def call(*args: Any, **kwargs: Any) -> Any:
            work = functools.partial(found, *args, **kwargs)
            return await anyio.to_thread.run_sync(work, abandon_on_cancel=True)

        return call


async def _thread(what: str, call: Callable[[], T], timeout: float | None = None) -> T:
    """Run a sync SDK call in a worker thread, given up after `timeout` (ACTION_TIMEOUT unless
    given); E2B's and the SDK's errors become SandboxError saying what failed."""
    timeout = ACTION_TIMEOUT if timeout is None else timeout
    with anyio.move_on_after(timeout):
        try:
            return await anyio.to_thread.run_sync(call, abandon_on_cancel=True)
        except e2b.CommandExitException as e:
            last = next((s for s in reversed((e.stderr or "").splitlines()) if s.strip()), "")
            raise SandboxError(
                f"E2B desktop: {what} failed (exit status {e.exit_code})"
                + (f": {last.strip()}" if last else "")
            ) from e
        except e2b.NotFoundException as e:
            raise SandboxError(f"E2B: not found: {e}") from e
        except e2b.TimeoutException as e:
            raise SandboxError(f"E2B desktop: {what} timed out: {e}") from e
        except (e2b.SandboxException, e2b.AuthenticationException, e2b.ServiceBusyException) as e:
            raise SandboxError(f"E2B: {e}") from e
        except (RuntimeError, ValueError) as e:  # the SDK's own checks (stream, screen size)
            raise SandboxError(f"E2B desktop: {what}: {e}") from e
    raise SandboxError(f"E2B desktop: {what} got no answer within {timeout:g} s") from None


def _scaled(png: bytes, scale: float) -> bytes:
    from PIL import Image  # noqa: PLC0415 (only when scaling)

    try:
        with Image.open(io.BytesIO(png)) as image:
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            out = io.BytesIO()
            image.resize(size, Image.Resampling.LANCZOS).save(out, format="PNG")
    except OSError as e:  # PIL.UnidentifiedImageError too
        raise SandboxError(f"E2B desktop: the screenshot is not a readable PNG: {e}") from e
    return out.getvalue()


def _kill_quietly(desktop: Any) -> None:
    try:
        desktop.kill()
    except Exception:
        logger.exception("an unwanted E2B desktop could not be killed; E2B ends it at its lifetime")
