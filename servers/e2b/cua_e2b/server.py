"""The MCP server: E2B's sandbox operations as tools, over stdio.

Configuration (environment):
  SANDBOX_BACKEND        local (default: a Docker container per sandbox) | e2b (E2B's cloud)
  SANDBOX_IDLE_TIMEOUT   a sandbox unused this long is closed (default 5m; 300, 30s, 5m, 1h)
  SANDBOX_MAX_SESSIONS   open sandboxes at once (default 10)
  local:  SANDBOX_IMAGE (default cua-gateway/e2b:latest), SANDBOX_MEMORY (256Mi),
          SANDBOX_CPU (500m), SANDBOX_PIDS (64), SANDBOX_DISK (64Mi, work directory and /tmp)
  e2b:    E2B_API_KEY (secret), E2B_TEMPLATE (default: E2B's base), E2B_LIFETIME (1h: the cloud
          ends a sandbox by itself after this, even if this server is gone),
          E2B_DESKTOP_TEMPLATE (default: E2B's desktop)
  desktops: DESKTOP_RESOLUTION (1024x768, a new desktop's screen unless the call says otherwise);
          local: DESKTOP_IMAGE (cua-gateway/desktop:latest), DESKTOP_MEMORY (1Gi), DESKTOP_CPU
          (1), DESKTOP_PIDS (256), DESKTOP_DISK (256Mi), and the live views: DESKTOP_VIEW_HOST
          (127.0.0.1: where they listen), DESKTOP_VIEW_PORTS (6100-6199: the host ports they
          take), DESKTOP_VIEW_PUBLIC_HOST (the host name in their links; default the view host)
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from cua_e2b import __version__
from cua_e2b._tool_errors import call, using
from cua_e2b.backends import Limits, SandboxError, Settings, create_backend
from cua_e2b.desktop import Screen
from cua_e2b.desktop_tools import register_desktop_tools
from cua_e2b.sessions import Sessions

logger = logging.getLogger(__name__)

EXIT_CONFIG = 78  # EX_CONFIG: a setting is missing or invalid
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: the backend cannot be used (e.g. no Docker)
IDLE_TIMEOUT = 300.0  # seconds
MAX_IDLE_TIMEOUT = 24 * 3600.0
MAX_SESSIONS = 10
RUN_TIMEOUT = 60.0  # seconds a run may take unless the call says otherwise
MAX_RUN_TIMEOUT = 600.0
MAX_READ = 1024 * 1024  # bytes read_file returns at most
DEFAULT_SCREEN = Screen(1024, 768)
EXIT_TIMEOUT = 15.0  # seconds to clean up after SIGTERM before leaving anyway

SandboxId = Annotated[str, Field(description="The id create_sandbox returned.")]
Timeout = Annotated[
    float, Field(gt=0, le=MAX_RUN_TIMEOUT, description="Seconds before the run is stopped.")
]
Encoding = Annotated[
    Literal["utf-8", "base64"], Field(description="How `content` is encoded (base64: binary).")
]

READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)
ACT = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_SCALE = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_BYTES = re.compile(r"^\s*(\d+)\s*(Ki|Mi|Gi|k|M|G)?\s*$")
_RESOLUTION = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")
_BYTE_SCALE = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 10**3, "M": 10**6, "G": 10**9, None: 1}


def duration(text: str, what: str) -> float:
    found = _DURATION.match(text)
    if not found:
        raise ValueError(f"{what} must be a duration such as 300, 30s, 5m or 1h (got {text!r})")
    return float(found.group(1)) * _SCALE[found.group(2)]


def quantity(text: str, what: str) -> int:
    found = _BYTES.match(text)
    if not found:
        raise ValueError(f"{what} must be a size such as 256Mi or 1Gi (got {text!r})")
    return int(found.group(1)) * _BYTE_SCALE[found.group(2)]


def cpus(text: str, what: str = "SANDBOX_CPU") -> float:
    value = text.strip()
    try:
        return float(value[:-1]) / 1000 if value.endswith("m") else float(value)
    except ValueError:
        raise ValueError(f"{what} must be cores such as 500m or 1 (got {text!r})") from None


def resolution(text: str, what: str) -> tuple[int, int]:
    found = _RESOLUTION.match(text)
    if not found:
        raise ValueError(f"{what} must be WIDTHxHEIGHT such as 1024x768 (got {text!r})")
    return int(found.group(1)), int(found.group(2))


def port_range(text: str, what: str) -> range:
    first, _, last = text.partition("-")
    try:
        ports = range(int(first), int(last or first) + 1)
    except ValueError:
        raise ValueError(
            f"{what} must be a port or a range such as 6100-6199 (got {text!r})"
        ) from None
    if not ports or not 0 < ports.start <= ports.stop - 1 <= 65535:
        raise ValueError(f"{what} must be ports within 1-65535, first to last (got {text!r})")
    return ports


def _limits(get: Callable[[str, str], str], prefix: str, defaults: Limits) -> Limits:
    return Limits(
        memory=quantity(get(f"{prefix}_MEMORY", f"{defaults.memory}"), f"{prefix}_MEMORY"),
        cpu=cpus(get(f"{prefix}_CPU", f"{defaults.cpu:g}"), f"{prefix}_CPU"),
        pids=int(get(f"{prefix}_PIDS", str(defaults.pids))),
        disk=quantity(get(f"{prefix}_DISK", f"{defaults.disk}"), f"{prefix}_DISK"),
    )


def settings_from(environ: Mapping[str, str]) -> tuple[Settings, float, int]:
    """The backend's settings, the idle timeout and the session limit, from the environment."""

    def get(name: str, default: str) -> str:
        return environ.get(name) or default

    defaults = Settings()
    limits = _limits(get, "SANDBOX", defaults.limits)
    settings = Settings(
        backend=get("SANDBOX_BACKEND", "local"),
        image=get("SANDBOX_IMAGE", "cua-gateway/e2b:latest"),
        limits=limits,
        e2b_api_key=environ.get("E2B_API_KEY") or None,
        e2b_template=environ.get("E2B_TEMPLATE") or None,
        e2b_lifetime=int(duration(get("E2B_LIFETIME", "1h"), "E2B_LIFETIME")),
        e2b_desktop_template=environ.get("E2B_DESKTOP_TEMPLATE") or None,
        desktop_image=get("DESKTOP_IMAGE", defaults.desktop_image),
        desktop_limits=_limits(get, "DESKTOP", defaults.desktop_limits),
        desktop_screen=resolution(get("DESKTOP_RESOLUTION", "1024x768"), "DESKTOP_RESOLUTION"),
        view_host=get("DESKTOP_VIEW_HOST", defaults.view_host),
        view_ports=port_range(get("DESKTOP_VIEW_PORTS", "6100-6199"), "DESKTOP_VIEW_PORTS"),
        view_public_host=environ.get("DESKTOP_VIEW_PUBLIC_HOST") or None,
    )
    idle = duration(get("SANDBOX_IDLE_TIMEOUT", "5m"), "SANDBOX_IDLE_TIMEOUT")
    return settings, min(idle, MAX_IDLE_TIMEOUT), int(get("SANDBOX_MAX_SESSIONS", "10"))


def create_server(
    sessions: Sessions,
    stopped: anyio.Event | None = None,
    screen: Screen = DEFAULT_SCREEN,
) -> MCPServer[None]:
    """The server; `stopped` is set once its sandboxes are closed, after it stops serving;
    `screen` is a new desktop's size unless a call says otherwise."""

    @asynccontextmanager
    async def lifespan(_: MCPServer[None]) -> AsyncIterator[None]:
        try:
            async with sessions.run():
                yield None
        finally:
            if stopped is not None:
                stopped.set()

    mcp: MCPServer[None] = MCPServer(
        "cua-e2b",
        version=__version__,
        instructions=(
            "Code sandboxes. create_sandbox gives a sandbox_id; run_code (Python), run_command "
            "(sh), write_file, read_file and list_files work inside it (relative paths are "
            "relative to its work directory); close_sandbox destroys it. A sandbox left idle "
            "is closed by itself. Local sandboxes have no network."
        ),
        lifespan=lifespan,
        log_level="WARNING",
    )

    @mcp.tool(annotations=ACT)
    async def create_sandbox(
        idle_timeout: Annotated[
            float | None,
            Field(gt=0, le=MAX_IDLE_TIMEOUT, description="Seconds of disuse before it closes."),
        ] = None,
    ) -> Any:
        """Create a sandbox: an isolated machine with Python, for the calls that name it."""
        session = await call(sessions.create(idle_timeout))
        return {
            "sandbox_id": session.id,
            "backend": sessions.backend,
            "workdir": session.sandbox.workdir,
            "idle_timeout": session.idle_timeout,
        }

    @mcp.tool(annotations=ACT)
    async def run_code(sandbox_id: SandboxId, code: str, timeout: Timeout = RUN_TIMEOUT) -> Any:
        """Run Python code (python3) in the sandbox; returns its stdout, stderr and exit code,
        and in `error` why it failed: an exception, a timeout, or a sandbox limit it hit."""
        async with using(sessions.use(sandbox_id)) as sandbox:
            return (await sandbox.run_code(code, timeout)).as_dict()

    @mcp.tool(annotations=ACT)
    async def run_command(
        sandbox_id: SandboxId,
        command: str,
        cwd: Annotated[str | None, Field(description="Working directory.")] = None,
        timeout: Timeout = RUN_TIMEOUT,
    ) -> Any:
        """Run a shell command (sh -c) in the sandbox; returns stdout, stderr, exit code and,
        in `error`, why it failed."""
        async with using(sessions.use(sandbox_id)) as sandbox:
            return (await sandbox.run_command(command, cwd, timeout)).as_dict()

    @mcp.tool(annotations=WRITE)
    async def write_file(
        sandbox_id: SandboxId, path: str, content: str, encoding: Encoding = "utf-8"
    ) -> Any:
        """Create or replace a file in the sandbox (its folders are created)."""
        data = _decode(content, encoding)
        async with using(sessions.use(sandbox_id)) as sandbox:
            written = await sandbox.write_file(path, data)
        return {"path": written, "size": len(data)}

    @mcp.tool(annotations=READ)
    async def read_file(sandbox_id: SandboxId, path: str, encoding: Encoding = "utf-8") -> Any:
        """Read a file from the sandbox (at most 1 MiB)."""
        async with using(sessions.use(sandbox_id)) as sandbox:
            data = await sandbox.read_file(path, MAX_READ)
        if encoding == "base64":
            return {"path": path, "content": base64.b64encode(data).decode(), "size": len(data)}
        return {"path": path, "content": data.decode(errors="replace"), "size": len(data)}

    @mcp.tool(annotations=READ)
    async def list_files(sandbox_id: SandboxId, path: str = ".") -> Any:
        """List a folder of the sandbox: name, path, type (file, dir, symlink) and size."""
        async with using(sessions.use(sandbox_id)) as sandbox:
            entries = await sandbox.list_files(path)
        return {"path": path, "entries": [e.as_dict() for e in entries]}

    @mcp.tool(annotations=WRITE)
    async def close_sandbox(sandbox_id: SandboxId) -> Any:
        """Destroy the sandbox and everything in it."""
        await call(sessions.close(sandbox_id))
        return {"closed": sandbox_id}

    @mcp.tool(annotations=READ)
    async def list_sandboxes() -> Any:
        """The open sandboxes: age, idle time and idle timeout, in seconds."""
        return {"backend": sessions.backend, "sandboxes": sessions.describe()}

    register_desktop_tools(mcp, sessions, screen)
    return mcp


def _decode(content: str, encoding: str) -> bytes:
    if encoding == "base64":
        try:
            return base64.b64decode(content, validate=True)
        except binascii.Error as e:
            raise ToolError(f"content is not valid base64: {e}") from e
    return content.encode()


def main() -> None:
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(message)s"
    )
    logging.getLogger("cua_e2b").setLevel(logging.INFO)
    try:
        settings, idle_timeout, max_sessions = settings_from(os.environ)
        backend = create_backend(settings)
    except (ValueError, SandboxError) as e:
        print(f"cua-e2b: {e}", file=sys.stderr)  # noqa: T201
        sys.exit(EXIT_CONFIG)
    sessions = Sessions(backend, idle_timeout, max_sessions)
    try:
        anyio.run(_serve, sessions, Screen(*settings.desktop_screen))
    except Exception as e:
        error = _sandbox_error(e)
        if error is None:
            raise
        print(f"cua-e2b: {error}", file=sys.stderr)  # noqa: T201
        sys.exit(EXIT_UNAVAILABLE)


def _sandbox_error(error: BaseException) -> SandboxError | None:
    """The SandboxError that ended the server, also from inside task groups' exception groups."""
    if isinstance(error, SandboxError):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            if (found := _sandbox_error(inner)) is not None:
                return found
    return None


async def _serve(sessions: Sessions, screen: Screen) -> None:
    stopped = anyio.Event()  # set once the lifespan has cleaned up
    server = create_server(sessions, stopped, screen)
    async with anyio.create_task_group() as tasks:
        with anyio.CancelScope() as serving:
            tasks.start_soon(_exit_on_signal, serving, stopped)
            await server.run_stdio_async()
        tasks.cancel_scope.cancel()


async def _exit_on_signal(serving: anyio.CancelScope, stopped: anyio.Event) -> None:
    """SIGTERM/SIGINT: stop serving, let the lifespan clean up, then leave at once (the thread
    that reads stdin cannot be interrupted, and the event loop would wait for it)."""
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            break
    serving.cancel()
    with anyio.move_on_after(EXIT_TIMEOUT):
        await stopped.wait()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(0)
