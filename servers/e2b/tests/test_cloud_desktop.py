"""The `e2b` desktop's mapping onto the `e2b-desktop` SDK, against a fake of the SDK's (sync)
Sandbox with the same method signatures (checked against the installed SDK), returning a real
PNG and the SDK's result types, raising the SDK's exceptions, and reusing the SDK's own stream
URL code and key table. E2B's cloud itself is not reachable here."""

from __future__ import annotations

import inspect
import io
import posixpath
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
import e2b
import e2b_desktop  # type: ignore[import-untyped]
import pytest
from cua_e2b.backends import Execution, SandboxError
from cua_e2b.desktop import Screen, Window
from cua_e2b.desktop import cloud as cloud_module
from cua_e2b.desktop._xdotool import KEYS
from cua_e2b.desktop.cloud import WINDOWS_SCRIPT, CloudDesktop, create_cloud_desktop, sdk_chord
from e2b.sandbox_sync.commands.command import Commands
from e2b.sandbox_sync.filesystem.filesystem import Filesystem
from e2b_desktop.main import _VNCServer, map_key  # type: ignore[import-untyped]
from PIL import Image

WAIT = 10.0  # seconds a fake waits for the test to release it
SANDBOX_ID = "i1a2b3c4d5e6f7g8h9j0"
WINDOWS = (
    "0x01a00004\t0\t24\t800\t600\t1\tTerminal - user@e2b: ~\n"
    "0x02000003\t120\t80\t640\t480\t0\tMozilla Firefox\n"
)


def png(width: int, height: int) -> bytes:
    image = Image.new("RGB", (width, height), (32, 64, 96))
    image.putpixel((0, 0), (255, 0, 0))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def worker_thread() -> None:
    """Every SDK call is blocking: it must run off the event loop's (main) thread."""
    assert threading.current_thread() is not threading.main_thread()


def result(code: int, stdout: str = "", stderr: str = "") -> e2b.CommandResult[str]:
    return e2b.CommandResult(stderr=stderr, stdout=stdout, exit_code=code, error=None)


@dataclass
class FakeCommands:
    """`commands` of the sync SDK: the window script prints WINDOWS, anything else succeeds."""

    fail: BaseException | None = None
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def run(  # noqa: PLR0917 (the SDK's signature)
        self,
        cmd: str,
        background: bool | None = None,
        envs: dict[str, str] | None = None,
        user: str | None = None,
        cwd: str | None = None,
        on_stdout: Any = None,
        on_stderr: Any = None,
        stdin: bool | None = None,
        timeout: float | None = 60,
        request_timeout: float | None = None,
        *,
        retain_output: bool = True,
    ) -> e2b.CommandResult:
        worker_thread()
        self.calls.append(
            (cmd, {"cwd": cwd, "timeout": timeout, "request_timeout": request_timeout})
        )
        if self.fail is not None:
            raise self.fail
        return result(0, WINDOWS if cmd == WINDOWS_SCRIPT else "ok\n")


@dataclass
class FakeFiles:
    content: dict[str, bytes] = field(default_factory=dict)

    def write(  # noqa: PLR0917 (the SDK's signature)
        self,
        path: str,
        data: Any,
        user: str | None = None,
        request_timeout: float | None = None,
        gzip: bool = False,
        use_octet_stream: bool | None = None,
        metadata: dict[str, str] | None = None,
    ) -> e2b.WriteInfo:
        worker_thread()
        self.content[path] = data.encode() if isinstance(data, str) else data
        return e2b.WriteInfo(name=path.rsplit("/", 1)[-1], type=e2b.FileType.FILE, path=path)

    def read(  # noqa: PLR0917 (the SDK's signature)
        self,
        path: str,
        format: str = "text",
        user: str | None = None,
        request_timeout: float | None = None,
        gzip: bool = False,
        stream_idle_timeout: float | None = None,
    ) -> bytearray:
        worker_thread()
        if path not in self.content:
            raise e2b.FileNotFoundException(f"path '{path}' does not exist")
        return bytearray(self.content[path])

    def list(
        self,
        path: str,
        depth: int | None = 1,
        user: str | None = None,
        request_timeout: float | None = None,
    ) -> list[e2b.EntryInfo]:
        worker_thread()
        return [
            e2b.EntryInfo(
                name=posixpath.basename(file),
                type=e2b.FileType.FILE,
                path=file,
                size=len(data),
                mode=0o644,
                permissions="rw-r--r--",
                owner="user",
                group="user",
                modified_time=datetime(2026, 1, 1, tzinfo=UTC),
            )
            for file, data in self.content.items()
            if posixpath.dirname(file) == path
        ]


class FakeStream:
    """`stream` (the SDK's _VNCServer): start is faked; the URL and the key are the SDK's code."""

    get_url = _VNCServer.get_url
    get_auth_key = _VNCServer.get_auth_key

    def __init__(self) -> None:
        self._url = f"https://6080-{SANDBOX_ID}.e2b.app/vnc.html"
        self._novnc_password: str | None = None
        self.starts: list[dict[str, Any]] = []
        self.fail: BaseException | None = None

    def start(
        self,
        vnc_port: int | None = None,
        port: int | None = None,
        require_auth: bool = False,
        window_id: str | None = None,
    ) -> None:
        worker_thread()
        self.starts.append({"require_auth": require_auth, "vnc_port": vnc_port, "port": port})
        if self.fail is not None:
            raise self.fail
        if len(self.starts) > 1:
            raise RuntimeError("Stream is already running")  # what the SDK says
        self._novnc_password = _VNCServer._generate_password() if require_auth else None


class FakeDesktop:
    """e2b_desktop.Sandbox: records each call as (method, arguments); `fail` makes one raise."""

    def __init__(self, size: tuple[int, int] = (1024, 768)) -> None:
        self.size = size
        self.commands = FakeCommands()
        self.files = FakeFiles()
        self.stream = FakeStream()
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.fail: dict[str, BaseException] = {}
        self.killed = threading.Event()

    def _call(self, method: str, *arguments: Any) -> None:
        worker_thread()
        self.calls.append((method, arguments))
        if method in self.fail:
            raise self.fail[method]

    def screenshot(self, format: str = "bytes") -> bytearray:
        self._call("screenshot", format)
        return bytearray(png(*self.size))

    def left_click(self, x: int | None = None, y: int | None = None) -> None:
        self._call("left_click", *(a for a in (x, y) if a is not None))

    def double_click(self, x: int | None = None, y: int | None = None) -> None:
        self._call("double_click", *(a for a in (x, y) if a is not None))

    def right_click(self, x: int | None = None, y: int | None = None) -> None:
        self._call("right_click", *(a for a in (x, y) if a is not None))

    def middle_click(self, x: int | None = None, y: int | None = None) -> None:
        self._call("middle_click", *(a for a in (x, y) if a is not None))

    def scroll(self, direction: str = "down", amount: int = 1) -> None:
        self._call("scroll", direction, amount)

    def move_mouse(self, x: int, y: int) -> None:
        self._call("move_mouse", x, y)

    def drag(self, fr: tuple[int, int], to: tuple[int, int]) -> None:
        self._call("drag", fr, to)

    def write(self, text: str, *, chunk_size: int = 25, delay_in_ms: int = 75) -> None:
        self._call("write", text)

    def press(self, key: str | list[str]) -> None:
        self._call("press", key)

    def launch(self, application: str, uri: str | None = None) -> None:
        self._call("launch", application)

    def get_screen_size(self) -> tuple[int, int]:
        self._call("get_screen_size")
        return self.size

    def kill(self, **opts: Any) -> bool:
        self._call("kill")
        self.killed.set()
        return True


@dataclass
class FakeCreate:
    """e2b_desktop.Sandbox.create; `release`, when given, holds the creation until it is set."""

    desktop: FakeDesktop = field(default_factory=FakeDesktop)
    fail: BaseException | None = None
    release: threading.Event | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, **kwargs: Any) -> FakeDesktop:
        worker_thread()
        self.calls.append(kwargs)
        if self.release is not None:
            assert self.release.wait(WAIT)
        if self.fail is not None:
            raise self.fail
        return self.desktop


def accepted(function: Any) -> set[str]:
    """The keyword arguments `function` takes by name (the SDK's documented parameters)."""
    parameters = inspect.signature(function).parameters
    names = {p.name for p in parameters.values() if p.kind != p.VAR_KEYWORD}
    if any(p.kind == p.VAR_KEYWORD for p in parameters.values()):
        names |= set(e2b.ApiParams.__annotations__)
    return names


def run(coroutine: Any) -> Any:
    async def main() -> Any:
        return await coroutine

    return anyio.run(main)


def desktop_with(size: tuple[int, int] = (1024, 768)) -> tuple[CloudDesktop, FakeDesktop]:
    fake = FakeDesktop(size)
    return CloudDesktop(fake, Screen(*size)), fake


@pytest.mark.parametrize(
    ("fake", "real"),
    [
        *(
            (getattr(FakeDesktop, name), getattr(e2b_desktop.Sandbox, name))
            for name in (
                "screenshot",
                "left_click",
                "double_click",
                "right_click",
                "middle_click",
                "scroll",
                "move_mouse",
                "drag",
                "write",
                "press",
                "launch",
                "get_screen_size",
                "kill",
            )
        ),
        (FakeStream.start, _VNCServer.start),
        (FakeCommands.run, Commands.run),
        (FakeFiles.write, Filesystem.write),
        (FakeFiles.read, Filesystem.read),
        (FakeFiles.list, Filesystem.list),
    ],
)
def test_the_fake_has_the_sdk_s_signatures(fake: Any, real: Any) -> None:
    def shape(function: Any) -> list[tuple[str, Any, Any]]:
        return [
            (p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()
        ]

    assert shape(fake) == shape(real)


def test_create_passes_the_key_template_lifetime_resolution_and_metadata_to_the_sdk() -> None:
    create = FakeCreate(FakeDesktop((1280, 800)))
    desktop = run(
        create_cloud_desktop(
            "e2b_key", "my-desktop", 1800, (1280, 800), {"cua-sandbox-id": "sbx-1"}, create=create
        )
    )
    assert create.calls == [
        {
            "template": "my-desktop",
            "resolution": (1280, 800),
            "timeout": 1800,
            "metadata": {"cua-sandbox-id": "sbx-1"},
            "api_key": "e2b_key",
        }
    ]
    assert set(create.calls[0]) <= accepted(e2b_desktop.Sandbox.create)
    assert desktop.screen == Screen(1280, 800)
    assert desktop.workdir == "/home/user"


def test_a_failed_creation_is_a_sandbox_error_and_leaves_no_desktop_behind() -> None:
    refused = FakeCreate(fail=e2b.AuthenticationException("invalid API key"))
    with pytest.raises(SandboxError, match=r"^E2B: invalid API key$"):
        run(create_cloud_desktop("bad", None, 60, (1024, 768), {}, create=refused))

    broken = FakeCreate()
    broken.desktop.fail["get_screen_size"] = RuntimeError("Failed to parse screen size from output")
    with pytest.raises(SandboxError, match="creating the desktop: Failed to parse screen size"):
        run(create_cloud_desktop("key", None, 60, (1024, 768), {}, create=broken))
    assert broken.desktop.killed.is_set()

    with pytest.raises(SandboxError, match="resolution must be positive"):
        run(create_cloud_desktop("key", None, 60, (0, 768), {}, create=FakeCreate()))


def test_a_desktop_created_after_the_caller_gave_up_is_killed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cloud_module, "CREATE_TIMEOUT", 0.05)
    create = FakeCreate(release=threading.Event())
    try:
        with pytest.raises(
            SandboxError, match=r"creating the desktop got no answer within 0\.05 s"
        ):
            run(create_cloud_desktop("key", None, 60, (1024, 768), {}, create=create))
        assert not create.desktop.killed.is_set()
    finally:
        create.release.set()  # type: ignore[union-attr]
    assert create.desktop.killed.wait(WAIT)


@pytest.mark.parametrize(
    ("button", "double", "click"),
    [
        ("left", False, ("left_click", ())),
        ("right", False, ("right_click", ())),
        ("middle", False, ("middle_click", ())),
        ("left", True, ("double_click", ())),
    ],
)
def test_a_click_moves_the_pointer_then_clicks_where_it_is(
    button: Any, double: bool, click: tuple[str, tuple[Any, ...]]
) -> None:
    desktop, fake = desktop_with()
    # (0, y): the SDK's own left_click(0, y) would skip the move, as 0 is false
    run(desktop.click(0, 767, button, double))
    assert fake.calls == [("move_mouse", (0, 767)), click]


def test_a_double_click_of_another_button_is_the_sdk_s_xdotool_command() -> None:
    desktop, fake = desktop_with()
    run(desktop.click(10, 20, "right", double=True))
    assert fake.calls == [("move_mouse", (10, 20))]
    assert [command for command, _ in fake.commands.calls] == ["xdotool click --repeat 2 3"]


def test_moves_and_drags_map_onto_the_sdk() -> None:
    desktop, fake = desktop_with()
    run(desktop.move_mouse(1023, 0))
    run(desktop.drag((5, 6), (700, 500)))
    assert fake.calls == [("move_mouse", (1023, 0)), ("drag", ((5, 6), (700, 500)))]


def test_points_off_the_screen_are_refused_before_anything_runs() -> None:
    desktop, fake = desktop_with()
    with pytest.raises(SandboxError, match=r"\(1024, 0\) is off the screen: x must be in 0..1023"):
        run(desktop.click(1024, 0))
    with pytest.raises(SandboxError, match="off the screen"):
        run(desktop.move_mouse(-1, 5))
    with pytest.raises(SandboxError, match=r"\(10, 768\) is off the screen"):
        run(desktop.drag((0, 0), (10, 768)))
    with pytest.raises(SandboxError, match="off the screen"):
        run(desktop.scroll("down", 1, 2000, 0))
    assert fake.calls == []
    assert fake.commands.calls == []


def test_scrolling_up_and_down_is_the_sdk_s_and_sideways_is_xdotool_s_wheel() -> None:
    desktop, fake = desktop_with()
    run(desktop.scroll("down", 3, 100, 200))
    run(desktop.scroll("up", 1, None, None))
    assert fake.calls == [
        ("move_mouse", (100, 200)),
        ("scroll", ("down", 3)),
        ("scroll", ("up", 1)),
    ]
    run(desktop.scroll("left", 2, None, None))
    run(desktop.scroll("right", 4, None, None))
    assert [command for command, _ in fake.commands.calls] == [
        "xdotool click --repeat 2 6",
        "xdotool click --repeat 4 7",
    ]
    with pytest.raises(SandboxError, match="both x and y, or neither"):
        run(desktop.scroll("down", 1, 5, None))
    with pytest.raises(SandboxError, match="at least 1 notch"):
        run(desktop.scroll("down", 0, None, None))


def test_text_is_written_by_the_sdk() -> None:
    desktop, fake = desktop_with()
    run(desktop.type_text("héllo, wörld\n"))
    run(desktop.type_text(""))
    assert fake.calls == [("write", ("héllo, wörld\n",))]


@pytest.mark.parametrize(
    ("keys", "chord", "keysyms"),
    [
        (["ctrl", "l"], ["ctrl", "l"], "Control_L+l"),
        (["Return"], ["enter"], "Return"),
        (["alt", "F4"], ["alt", "f4"], "Alt_L+F4"),
        (["ctrl", "shift", "Tab"], ["ctrl", "shift", "tab"], "Control_L+Shift_L+Tab"),
        (["esc"], ["esc"], "Escape"),
        (["BackSpace"], ["backspace"], "BackSpace"),
        (["Page_Up"], ["page_up"], "Page_Up"),
        (["pagedown"], ["page_down"], "Page_Down"),
        (["cmd", "space"], ["super", "space"], "Super_L+space"),
        (["ctrl", "+"], ["ctrl", "plus"], "Control_L+plus"),
        (["ctrl", "-"], ["ctrl", "minus"], "Control_L+minus"),
        ([" "], ["space"], "space"),
        (["ctrl", "A"], ["shift", "ctrl", "a"], "Shift_L+Control_L+a"),
        (["7"], ["7"], "7"),
    ],
)
def test_key_names_become_the_sdk_s_and_reach_xdotool_as_keysyms(
    keys: list[str], chord: list[str], keysyms: str
) -> None:
    desktop, fake = desktop_with()
    run(desktop.press_keys(keys))
    assert fake.calls == [("press", (chord,))]
    assert "+".join(map_key(key) for key in chord) == keysyms  # what the SDK runs: xdotool key …


def test_every_key_name_of_the_local_desktop_presses_the_same_key_in_e2b() -> None:
    same = {"Prior": "Page_Up", "Next": "Page_Down"}  # one keysym each, two names
    for name, keysym in KEYS.items():
        [sdk_name] = sdk_chord([name])
        assert map_key(sdk_name) == same.get(keysym, keysym), name


def test_keys_the_sdk_cannot_press_are_refused_before_anything_runs() -> None:
    desktop, fake = desktop_with()
    with pytest.raises(SandboxError, match="unknown key 'hyper'; the keys are ctrl, alt"):
        run(desktop.press_keys(["ctrl", "hyper"]))
    with pytest.raises(SandboxError, match=r"unknown key 'é'.*type_text"):
        run(desktop.press_keys(["é"]))
    with pytest.raises(SandboxError, match="at least one key"):
        run(desktop.press_keys([]))
    with pytest.raises(SandboxError, match="at most 8 keys"):
        run(desktop.press_keys(["a"] * 9))
    assert fake.calls == []


def test_launch_starts_an_application_by_name_and_refuses_anything_else() -> None:
    desktop, fake = desktop_with()
    run(desktop.launch("xfce4-terminal"))
    assert fake.calls == [("launch", ("xfce4-terminal",))]
    with pytest.raises(SandboxError, match="is not an application's name"):
        run(desktop.launch("xterm; rm -rf ~"))
    assert len(fake.calls) == 1


def test_windows_are_read_from_the_window_script_s_output() -> None:
    desktop, fake = desktop_with()
    windows = run(desktop.list_windows())
    assert [command for command, _ in fake.commands.calls] == [WINDOWS_SCRIPT]
    assert windows == [
        Window("0x01a00004", "Terminal - user@e2b: ~", 0, 24, 800, 600, focused=True),
        Window("0x02000003", "Mozilla Firefox", 120, 80, 640, 480, focused=False),
    ]


def test_a_screenshot_is_the_sdk_s_png_scaled_when_asked() -> None:
    desktop, fake = desktop_with((640, 480))
    full = run(desktop.screenshot())
    assert type(full) is bytes
    assert full == png(640, 480)
    assert fake.calls == [("screenshot", ("bytes",))]
    with Image.open(io.BytesIO(run(desktop.screenshot(0.5)))) as half:
        assert (half.format, half.size) == ("PNG", (320, 240))
    for scale in (0, -1, 1.5):
        with pytest.raises(SandboxError, match="scale must be more than 0 and at most 1"):
            run(desktop.screenshot(scale))


def test_the_live_view_starts_once_with_a_password_that_its_url_carries() -> None:
    desktop, fake = desktop_with()

    async def twice() -> list[str]:
        urls: list[str] = []

        async def get() -> None:
            urls.append(await desktop.stream_url())

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(get)
            tasks.start_soon(get)
        return urls

    first, second = run(twice())
    assert fake.stream.starts == [{"require_auth": True, "vnc_port": None, "port": None}]
    key = fake.stream.get_auth_key()
    assert len(key) == 16
    assert first == second
    assert first == (
        f"https://6080-{SANDBOX_ID}.e2b.app/vnc.html?autoconnect=true&resize=scale&password={key}"
    )


@pytest.mark.parametrize(
    ("action", "method", "error", "message"),
    [
        (
            lambda d: d.click(5, 5),
            "left_click",
            e2b.CommandExitException(
                stderr="Error: Can't open display: :0\n", stdout="", exit_code=1, error=None
            ),
            r"^E2B desktop: the left click failed \(exit status 1\): Error: Can't open display",
        ),
        (
            lambda d: d.screenshot(),
            "screenshot",
            e2b.SandboxNotFoundException("Sandbox i1a2b3 not found"),
            "^E2B: not found: Sandbox i1a2b3 not found$",
        ),
        (
            lambda d: d.press_keys(["enter"]),
            "press",
            e2b.TimeoutException("context deadline exceeded"),
            "^E2B desktop: pressing enter timed out: context deadline exceeded$",
        ),
        (
            lambda d: d.type_text("x"),
            "write",
            e2b.RateLimitException("Rate limit exceeded"),  # type: ignore[no-untyped-call]
            "^E2B: Rate limit exceeded$",
        ),
    ],
)
def test_sdk_errors_become_sandbox_errors_saying_what_failed(
    action: Any, method: str, error: BaseException, message: str
) -> None:
    desktop, fake = desktop_with()
    fake.fail[method] = error
    with pytest.raises(SandboxError, match=message):
        run(action(desktop))


def test_a_live_view_that_cannot_start_is_a_sandbox_error_and_is_tried_again() -> None:
    desktop, fake = desktop_with()
    fake.stream.fail = e2b.TimeoutException("Could not start noVNC server")
    with pytest.raises(SandboxError, match="starting the live view timed out: Could not start"):
        run(desktop.stream_url())
    fake.stream.fail = None
    with pytest.raises(SandboxError, match="starting the live view: Stream is already running"):
        run(desktop.stream_url())


def test_an_action_without_an_answer_is_given_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cloud_module, "ACTION_TIMEOUT", 0.05)
    desktop, fake = desktop_with()
    release = threading.Event()
    fake.move_mouse = lambda x, y: release.wait(WAIT)  # type: ignore[method-assign,assignment]
    try:
        with pytest.raises(SandboxError, match=r"moving the mouse got no answer within 0\.05 s"):
            run(desktop.move_mouse(1, 1))
    finally:
        release.set()


def test_commands_code_and_files_go_through_the_cloud_backend_s_mapping() -> None:
    desktop, fake = desktop_with()
    assert run(desktop.run_command("echo ok", "/home/user", 12)) == Execution("ok\n", "", 0)
    command, kwargs = fake.commands.calls[0]
    assert command == "echo ok"
    assert kwargs == {"cwd": "/home/user", "timeout": 12, "request_timeout": 17.0}
    assert run(desktop.run_code("print(1)", 5)).exit_code == 0
    assert fake.commands.calls[1][0].startswith("python3 /tmp/cua-code-")
    assert run(desktop.write_file("/home/user/a.txt", b"abc")) == "/home/user/a.txt"
    assert run(desktop.read_file("/home/user/a.txt", 10)) == b"abc"
    entries = run(desktop.list_files("/home/user"))
    assert [(e.name, e.type, e.size) for e in entries] == [("a.txt", "file", 3)]
    with pytest.raises(SandboxError, match="E2B: not found: path 'nope' does not exist"):
        run(desktop.read_file("nope", 10))
    fake.commands.fail = e2b.CommandExitException(
        stderr="sh: 1: nope: not found\n", stdout="", exit_code=127, error=None
    )
    assert run(desktop.run_command("nope", None, 5)).error == (
        "exit status 127: sh: 1: nope: not found"
    )


def test_close_kills_the_desktop() -> None:
    desktop, fake = desktop_with()
    run(desktop.close())
    assert fake.killed.is_set()
    assert fake.calls == [("kill", ())]
