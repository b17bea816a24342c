"""The `e2b` backend: sandboxes in E2B's cloud, through the `e2b` SDK's AsyncSandbox.

Mapping: create → AsyncSandbox.create(template, timeout=lifetime, api_key, metadata);
run_command → sandbox.commands.run (a non-zero exit arrives as CommandExitException, which is
also a CommandResult); run_code → files.write of the source, then `python3 <file>`; write_file →
files.write; read_file → files.read(format="bytes"); list_files → files.list; close → kill().
Desktops are E2B Desktop sandboxes (`desktop/cloud.py`).
Idle expiry is this server's (sessions.py); `lifetime` is E2B's own bound on a sandbox, so none
outlives it even if this server is gone.
"""

from __future__ import annotations

import posixpath
import shlex
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import e2b

from cua_e2b.backends import Entry, EntryType, Execution, SandboxError

if TYPE_CHECKING:
    from cua_e2b.desktop import Desktop, Screen

T = TypeVar("T")

WORKDIR = "/home/user"  # the home of E2B's default user, where relative paths land
CODE_DIR = "/tmp"  # noqa: S108 (inside the sandbox)
TIMEOUT_GRACE = 5.0  # seconds the SDK's request may take beyond the command's own timeout
TYPES: dict[str, EntryType] = {"file": "file", "dir": "dir", "symlink": "symlink"}

SandboxFactory = Callable[..., Awaitable[Any]]


class CloudBackend:
    name = "e2b"

    def __init__(
        self,
        api_key: str,
        template: str | None,
        lifetime: int,
        create: SandboxFactory | None = None,
        *,
        desktop_template: str | None = None,
        create_desktop: Callable[..., Any] | None = None,
    ) -> None:
        self._api_key = api_key
        self._desktop_template = desktop_template
        self._create_desktop = create_desktop
        self._template = template
        self._lifetime = lifetime
        self._create = create or e2b.AsyncSandbox.create

    @asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        yield  # the sessions close their sandboxes; E2B ends any left at their lifetime

    async def create(self, sandbox_id: str) -> CloudSandbox:
        sandbox = await _sdk(
            self._create(
                template=self._template,
                timeout=self._lifetime,
                api_key=self._api_key,
                metadata={"cua-sandbox-id": sandbox_id},
            )
        )
        return CloudSandbox(sandbox)

    async def create_desktop(
        self, sandbox_id: str, screen: Screen, allow: Sequence[str] = ()
    ) -> Desktop:
        """An E2B Desktop (template E2B_DESKTOP_TEMPLATE, default E2B's `desktop`)."""
        if allow:
            raise SandboxError(
                "the e2b backend takes no network allowlist: an E2B desktop has the network "
                "its template gives it"
            )
        from cua_e2b.desktop.cloud import create_cloud_desktop  # noqa: PLC0415 (imports this)

        return await create_cloud_desktop(
            self._api_key,
            self._desktop_template,
            self._lifetime,
            (screen.width, screen.height),
            {"cua-sandbox-id": sandbox_id},
            create=self._create_desktop,
        )


class CloudSandbox:
    def __init__(self, sandbox: Any) -> None:
        self._sandbox = sandbox

    @property
    def workdir(self) -> str:
        return WORKDIR

    async def run_command(self, command: str, cwd: str | None, timeout: float) -> Execution:
        try:
            result = await self._sandbox.commands.run(
                command, cwd=cwd, timeout=timeout, request_timeout=timeout + TIMEOUT_GRACE
            )
        except e2b.CommandExitException as exited:  # a CommandResult with a non-zero exit
            result = exited
        except e2b.TimeoutException as e:
            return Execution(
                "", "", None, f"timed out after {timeout:g} s and was stopped: {e}", True
            )
        except (e2b.SandboxException, e2b.AuthenticationException) as e:
            raise SandboxError(f"E2B: {e}") from e
        stderr = result.stderr or ""
        error = result.error
        if result.exit_code and not error:
            last = next((line for line in reversed(stderr.splitlines()) if line.strip()), "")
            error = f"exit status {result.exit_code}" + (f": {last.strip()}" if last else "")
        return Execution(result.stdout or "", stderr, result.exit_code, error or None)

    async def run_code(self, code: str, timeout: float) -> Execution:
        path = posixpath.join(CODE_DIR, f"cua-code-{uuid.uuid4().hex}.py")
        await _sdk(self._sandbox.files.write(path, code))
        return await self.run_command(f"python3 {shlex.quote(path)}", None, timeout)

    async def write_file(self, path: str, data: bytes) -> str:
        info = await _sdk(self._sandbox.files.write(path, data))
        return str(info.path)

    async def read_file(self, path: str, max_bytes: int) -> bytes:
        data = bytes(await _sdk(self._sandbox.files.read(path, format="bytes")))
        if len(data) > max_bytes:
            raise SandboxError(
                f"{path} is larger than {max_bytes} bytes, the most read_file returns; "
                "read a part of it with run_command (head, tail, sed -n)"
            )
        return data

    async def list_files(self, path: str) -> list[Entry]:
        entries = await _sdk(self._sandbox.files.list(path))
        return sorted(
            (
                Entry(
                    e.name,
                    e.path,
                    TYPES.get(e.type.value if e.type else "", "other"),
                    int(e.size),
                )
                for e in entries
            ),
            key=lambda e: e.name,
        )

    async def close(self) -> None:
        await _sdk(self._sandbox.kill())


async def _sdk(call: Awaitable[T]) -> T:
    """Await an SDK call; E2B's errors become SandboxError with E2B's message."""
    try:
        return await call
    except e2b.NotFoundException as e:
        raise SandboxError(f"E2B: not found: {e}") from e
    except (e2b.SandboxException, e2b.AuthenticationException) as e:
        raise SandboxError(f"E2B: {e}") from e
