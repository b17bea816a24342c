"""What a sandbox backend offers, and the backends by name.

A backend creates sandboxes; a sandbox runs code and commands and reads and writes files. The
backends are `local` (a locked-down Docker container per sandbox) and `e2b` (E2B's cloud).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from cua_e2b.desktop import Desktop, Screen

EntryType = Literal["file", "dir", "symlink", "other"]


class SandboxError(Exception):
    """A failure the caller should read: unknown sandbox, missing file, backend unreachable."""


@dataclass(frozen=True, slots=True)
class Execution:
    """How a command or a piece of code ran. `error` says in words why it did not succeed."""

    stdout: str
    stderr: str
    exit_code: int | None
    error: str | None = None
    timed_out: bool = False
    limits_hit: tuple[str, ...] = ()
    """Sandbox limits the run ran into: "memory" (a process was killed), "pids"."""

    def as_dict(self) -> dict[str, object]:
        return {
            "exit_code": self.exit_code,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "error": self.error,
            "timed_out": self.timed_out,
            "limits_hit": list(self.limits_hit),
        }


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    path: str
    type: EntryType
    size: int

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "path": self.path, "type": self.type, "size": self.size}


@dataclass(frozen=True, slots=True)
class Limits:
    """What one local sandbox may use."""

    memory: int = 256 * 2**20  # bytes, swap included
    cpu: float = 0.5  # cores
    pids: int = 64
    disk: int = 64 * 2**20  # bytes of its work directory (and of its /tmp)


class Sandbox(Protocol):
    """One sandbox. Relative paths are relative to its work directory."""

    @property
    def workdir(self) -> str: ...

    async def run_command(self, command: str, cwd: str | None, timeout: float) -> Execution: ...

    async def run_code(self, code: str, timeout: float) -> Execution:
        """Run Python source with python3."""
        ...

    async def write_file(self, path: str, data: bytes) -> str:
        """Create or replace a file (and its folders); return its absolute path."""
        ...

    async def read_file(self, path: str, max_bytes: int) -> bytes: ...

    async def list_files(self, path: str) -> list[Entry]: ...

    async def close(self) -> None:
        """Destroy the sandbox and everything in it."""
        ...


class Backend(Protocol):
    name: str

    def run(self) -> AbstractAsyncContextManager[None]:
        """Be ready to create sandboxes inside the context; on leaving it, destroy any sandbox
        this backend created that is still there."""
        ...

    async def create(self, sandbox_id: str) -> Sandbox: ...

    async def create_desktop(
        self, sandbox_id: str, screen: Screen, allow: Sequence[str] = ()
    ) -> Desktop:
        """A sandbox with a screen of (about) `screen`'s size; no network unless `allow` names
        the hosts it may reach."""
        ...


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything either backend is configured with (read from the environment by server.py)."""

    backend: str = "local"
    image: str = "cua-gateway/e2b:latest"
    limits: Limits = field(default_factory=Limits)
    e2b_api_key: str | None = None
    e2b_template: str | None = None
    e2b_lifetime: int = 3600  # seconds: E2B ends a cloud sandbox by itself after this
    e2b_desktop_template: str | None = None  # None: E2B's `desktop`
    desktop_image: str = "cua-gateway/desktop:latest"  # local: built from servers/e2b/desktop
    desktop_limits: Limits = field(
        default_factory=lambda: Limits(memory=2**30, cpu=1.0, pids=256, disk=256 * 2**20)
    )
    desktop_screen: tuple[int, int] = (1024, 768)  # a new desktop's size unless asked otherwise
    view_host: str = "127.0.0.1"  # local: where live views listen
    view_ports: range = range(6100, 6200)  # local: the host ports live views take
    view_public_host: str | None = None  # local: the host name in their links (default view_host)


BACKENDS = ("local", "e2b")


def create_backend(settings: Settings) -> Backend:
    """The backend named by `settings.backend`; each imports its SDK only when chosen."""
    if settings.backend == "local":
        from cua_e2b.backends.local import LocalBackend  # noqa: PLC0415
        from cua_e2b.desktop.view import LiveViews  # noqa: PLC0415

        views = LiveViews(
            host=settings.view_host,
            ports=settings.view_ports,
            public_host=settings.view_public_host,
        )
        return LocalBackend(
            settings.image,
            settings.limits,
            desktop_image=settings.desktop_image,
            desktop_limits=settings.desktop_limits,
            views=views,
        )
    if settings.backend == "e2b":
        if not settings.e2b_api_key:
            raise SandboxError("the e2b backend needs E2B_API_KEY")
        from cua_e2b.backends.e2b import CloudBackend  # noqa: PLC0415

        return CloudBackend(
            settings.e2b_api_key,
            settings.e2b_template,
            settings.e2b_lifetime,
            desktop_template=settings.e2b_desktop_template,
        )
    raise SandboxError(f"unknown sandbox backend {settings.backend!r}; choose one of {BACKENDS}")
