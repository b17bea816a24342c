"""The `local` backend: one locked-down Docker container per sandbox.

A sandbox container runs `sleep infinity` under docker-init as uid 1000, with no network, a
read-only root, tmpfs for its work directory (/home/user) and /tmp, cpu/memory/pids limits, no
capabilities and no-new-privileges. Commands, code and file operations are `docker exec`s; code
and file contents travel on the exec's stdin. After each run the sandbox's cgroup counters tell
whether it ran out of memory or processes.

A desktop (`create_desktop`) is a sandbox container of the desktop image, locked down the same
way with its own limits, running the image's entrypoint (a virtual display, a window manager,
VNC and noVNC on the container's loopback); it is returned once that answers. A desktop with a
network allowlist (`allow`) is created with `PROXY_ENV` and gets an `Egress` (desktop/egress.py):
an HTTP proxy on its loopback that reaches only the allowlisted hosts, from this host. It runs in
the backend's own task group, started once the desktop answers and stopped when it closes.

Every sandbox container is labelled with this server instance and its owner (the server's own
container, or host:pid), and also with the gateway labels of the server's own container, so
that the gateway's sweeps remove sandboxes too. At start, sandboxes whose owner is gone are
removed; at exit, all of this instance's.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.abc
import docker
import docker.errors
import requests

from cua_e2b.backends import Entry, EntryType, Execution, Limits, SandboxError, Settings, _exec
from cua_e2b.backends._exec import Output
from cua_e2b.desktop.allowlist import EgressPolicy
from cua_e2b.desktop.egress import PROXY_ENV, Egress
from cua_e2b.desktop.view import LiveViews, View

if TYPE_CHECKING:
    from cua_e2b.desktop import Screen
    from cua_e2b.desktop.local import LocalDesktop

logger = logging.getLogger(__name__)
T = TypeVar("T")

LABEL = "io.cua-gateway.e2b"
LABEL_SANDBOX = f"{LABEL}.sandbox"  # the sandbox id
LABEL_SERVER = f"{LABEL}.server"  # the server instance that created it
LABEL_OWNER = f"{LABEL}.owner"  # who runs that instance: container:<id> | process:<host>:<pid>
LABEL_DESKTOP = f"{LABEL}.desktop"  # on desktops: the screen size, WIDTHxHEIGHT
GATEWAY_LABELS = ("io.cua-gateway.gateway", "io.cua-gateway.instance", "io.cua-gateway.owner")

WORKDIR = "/home/user"
USER = "1000:1000"
SLEEP = ("sleep", "infinity")  # a plain sandbox's entrypoint: it only hosts `docker exec`s
API_TIMEOUT = 30  # seconds for one Docker API call
REMOVE_TIMEOUT = 10.0  # seconds to remove the sandboxes at exit
FILE_TIMEOUT = 30.0  # seconds for a file operation
KILL_AFTER = 1  # seconds between `timeout`'s TERM and its KILL
EXEC_GRACE = 5.0  # seconds past a run's own timeout before its output is abandoned
MAX_OUTPUT = 256 * 1024  # bytes of stdout, and of stderr, kept from one run
MAX_ENTRIES = 1000  # entries list_files returns
TIMEOUT_EXITS = (124, 137)  # `timeout` after TERM, after KILL
DESKTOP_READY_TIMEOUT = 30.0  # seconds for a new desktop's display, VNC and noVNC to answer
DESKTOP_BUILD = (
    "`docker build --network host -t {image} servers/e2b/desktop` (offline: add "
    "--build-arg BASE_IMAGE=cua-gateway/base:bookworm)"
)
_DEFAULTS = Settings()

# The sandbox cgroup's OOM kills and refused forks (cgroup v1, or v2 with its own namespace).
COUNTERS = (
    "cat /sys/fs/cgroup/memory/memory.oom_control /sys/fs/cgroup/memory.events 2>/dev/null"
    " | grep '^oom_kill '; cat /sys/fs/cgroup/pids/pids.events /sys/fs/cgroup/pids.events"
    " 2>/dev/null | sed -n 's/^max /pids_max /p'"
)
WRITE = 'mkdir -p -- "$(dirname -- "$1")" && cat > "$1"'
LIST = (
    'if [ ! -d "$1" ]; then [ -e "$1" ] && echo "not a directory" >&2'
    ' || echo "no such directory" >&2; exit 2; fi;'
    ' exec find "$1" -mindepth 1 -maxdepth 1 -printf "%y\\t%s\\t%f\\0"'
)
TYPES: dict[str, EntryType] = {"f": "file", "d": "dir", "l": "symlink"}


@dataclass(slots=True)
class Counters:
    oom_kills: int = 0
    refused_forks: int = 0


class LocalBackend:
    name = "local"

    def __init__(
        self,
        image: str,
        limits: Limits,
        client: Callable[[], docker.APIClient] | None = None,
        *,
        desktop_image: str = _DEFAULTS.desktop_image,
        desktop_limits: Limits = _DEFAULTS.desktop_limits,
        views: LiveViews | None = None,
    ) -> None:
        self._image = image
        self._limits = limits
        self._desktop_image = desktop_image
        self._desktop_limits = desktop_limits
        self._views = views or LiveViews()
        self._client = client or partial(docker.APIClient, version="auto", timeout=API_TIMEOUT)
        self._api: docker.APIClient | None = None
        self._instance = uuid.uuid4().hex
        self._labels: dict[str, str] = {}
        self._tasks: anyio.abc.TaskGroup | None = None  # the desktops' egress proxies run here
        self._running = False

    @asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        if self._running:
            raise RuntimeError("the local backend is already running")
        self._running = True
        try:
            self._api = await _docker(self._client)
        except SandboxError as e:
            raise SandboxError(f"{e} (is the host's /var/run/docker.sock mounted?)") from e
        try:
            self._labels = await _docker(self._identity)
            await self._reap_orphans()
            if not await _docker(self._image_present):
                logger.warning("sandbox image %s is not present yet", self._image)
            async with self._views.run(), anyio.create_task_group() as tasks:
                self._tasks = tasks
                try:
                    yield
                finally:
                    self._tasks = None
                    tasks.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(REMOVE_TIMEOUT):
                await self._remove({LABEL_SERVER: self._instance})
            await anyio.to_thread.run_sync(self._api.close)

    async def create(self, sandbox_id: str) -> LocalSandbox:
        api = self._require_api()
        labels = {**self._labels, LABEL_SANDBOX: sandbox_id}
        try:
            container = await _docker(partial(self._create, api, sandbox_id, labels))
        except docker.errors.ImageNotFound as e:
            raise SandboxError(
                f"the sandbox image {self._image} is not present: build it (the e2b server's "
                "own image serves) or point SANDBOX_IMAGE at an image with python3"
            ) from e
        sandbox = LocalSandbox(api, container, self._limits)
        try:
            await _docker(partial(api.start, container))
            await sandbox.read_counters()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await sandbox.close()
            raise
        logger.info("sandbox %s: container %s", sandbox_id, container[:12])
        return sandbox

    async def create_desktop(
        self, sandbox_id: str, screen: Screen, allow: Sequence[str] = ()
    ) -> LocalDesktop:
        """A desktop of `screen`'s size, once its display, VNC and noVNC answer, with its live
        view open and, when `allow` names hosts, its egress proxy listening."""
        from cua_e2b.desktop.local import (  # noqa: PLC0415 (it imports this module)
            LocalDesktop,
            check_screen,
        )

        policy = _policy(allow)
        check_screen(screen)
        api = self._require_api()
        size = f"{screen.width}x{screen.height}"
        labels = {**self._labels, LABEL_SANDBOX: sandbox_id, LABEL_DESKTOP: size}
        create = partial(
            self._create,
            api,
            sandbox_id,
            labels,
            image=self._desktop_image,
            limits=self._desktop_limits,
            entrypoint=None,  # the image's own: desktop-session
            environment={
                "DESKTOP_RESOLUTION": size,
                "DISPLAY": ":0",
                **(PROXY_ENV if policy else {}),
            },
            name=f"cua-desktop-{sandbox_id}",
            hostname="desktop",
        )
        try:
            container = await _docker(create)
        except docker.errors.ImageNotFound as e:
            raise SandboxError(
                f"the desktop image {self._desktop_image} is not present: build it with "
                + DESKTOP_BUILD.format(image=self._desktop_image)
            ) from e
        desktop = LocalDesktop(api, container, self._desktop_limits, screen)
        try:
            await _docker(partial(api.start, container))
            try:
                await desktop.wait_ready(DESKTOP_READY_TIMEOUT)
            except SandboxError as e:
                output = await desktop.last_output()
                raise SandboxError(
                    f"desktop {sandbox_id} did not start: {e}"
                    + (f"; its output ends: {output}" if output else "")
                ) from e
            await desktop.read_counters()
            view = await self._views.open(api, container, port=desktop.view_port, user=USER)
            desktop.on_close(view.close)
            desktop.live_view = _url_of(view)
            if policy:
                await self._start_egress(sandbox_id, desktop, policy)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await desktop.close()
            raise
        logger.info(
            "desktop %s (%s): container %s, %s",
            sandbox_id,
            size,
            container[:12],
            f"{len(policy.rules)} allowlist entries" if policy else "no network",
        )
        return desktop

    async def _start_egress(
        self, sandbox_id: str, desktop: LocalDesktop, policy: EgressPolicy
    ) -> None:
        """Run the desktop's egress proxy in the backend's task group (a context entered in the
        caller's task could not be left from the one that closes the desktop) until it closes."""
        tasks = self._tasks
        if tasks is None:
            raise RuntimeError("the local backend is not running")
        egress = Egress(self._require_api(), desktop.container_id, policy, user=USER)
        desktop.on_close(egress.close)
        try:
            await tasks.start(egress.serve)
        except SandboxError as e:
            raise SandboxError(f"desktop {sandbox_id} did not start: {e}") from e

    def _create(
        self,
        api: docker.APIClient,
        sandbox_id: str,
        labels: dict[str, str],
        *,
        image: str | None = None,
        limits: Limits | None = None,
        entrypoint: tuple[str, ...] | None = SLEEP,
        environment: dict[str, str] | None = None,
        name: str | None = None,
        hostname: str = "sandbox",
    ) -> str:
        limits = limits or self._limits
        tmpfs = f"rw,nosuid,nodev,size={limits.disk}"
        host_config = api.create_host_config(
            network_mode="none",
            mem_limit=limits.memory,
            memswap_limit=limits.memory,  # no swap beyond the limit
            nano_cpus=int(limits.cpu * 1e9),
            pids_limit=limits.pids,
            read_only=True,
            tmpfs={WORKDIR: f"{tmpfs},uid=1000,gid=1000,mode=0700", "/tmp": f"{tmpfs},mode=1777"},  # noqa: S108
            cap_drop=["ALL"],
            security_opt=["no-new-privileges:true"],
            init=True,  # docker-init reaps orphaned processes
        )
        created: dict[str, Any] = api.create_container(
            image or self._image,
            entrypoint=list(entrypoint) if entrypoint else None,
            command=[] if entrypoint else None,
            user=USER,
            working_dir=WORKDIR,
            hostname=hostname,
            environment={"HOME": WORKDIR, "LANG": "C.UTF-8", **(environment or {})},
            labels=labels,
            name=name or f"cua-sandbox-{sandbox_id}",
            host_config=host_config,
        )
        return str(created["Id"])

    def _identity(self) -> dict[str, str]:
        """This instance's labels: who owns it, and the gateway's labels of its container."""
        api = self._require_api()
        labels = {LABEL_SERVER: self._instance}
        container = _own_container_id()
        if container is not None:
            try:
                info = api.inspect_container(container)
            except docker.errors.NotFound:
                container = None
            else:
                own = info["Config"].get("Labels") or {}
                labels.update({k: own[k] for k in GATEWAY_LABELS if k in own})
        labels[LABEL_OWNER] = (
            f"container:{container}"
            if container
            else f"process:{socket.gethostname()}:{os.getpid()}"
        )
        return labels

    def _image_present(self) -> bool:
        try:
            self._require_api().inspect_image(self._image)  # type: ignore[no-untyped-call]
        except docker.errors.ImageNotFound:
            return False
        return True

    async def _reap_orphans(self) -> None:
        api = self._require_api()
        found = await _docker(partial(api.containers, all=True, filters={"label": [LABEL_SERVER]}))
        removed = 0
        for c in found:
            labels = c["Labels"]
            if labels.get(LABEL_SERVER) == self._instance:
                continue
            if not await _docker(partial(_owner_alive, api, labels.get(LABEL_OWNER, ""))):
                await _remove(api, str(c["Id"]))
                removed += 1
        if removed:
            logger.warning("removed %d sandboxes left by a server that is gone", removed)

    async def _remove(self, labels: dict[str, str]) -> None:
        api = self._require_api()
        filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
        found = await _docker(partial(api.containers, all=True, filters=filters))
        async with anyio.create_task_group() as tasks:
            for c in found:
                tasks.start_soon(_remove, api, str(c["Id"]))

    def _require_api(self) -> docker.APIClient:
        if self._api is None:
            raise RuntimeError("the local backend is not running")
        return self._api


class LocalSandbox:
    def __init__(self, api: docker.APIClient, container: str, limits: Limits) -> None:
        self._api = api
        self._container = container
        self._limits = limits
        self._counters = Counters()
        self._runs = anyio.Lock()  # one run at a time, so limits are told to the run that hit them

    @property
    def workdir(self) -> str:
        return WORKDIR

    async def run_command(self, command: str, cwd: str | None, timeout: float) -> Execution:
        argv = ["sh", "-c", command]
        return await self._run(argv, None, _absolute(cwd or WORKDIR), timeout, code=False)

    async def run_code(self, code: str, timeout: float) -> Execution:
        return await self._run(["python3", "-"], code.encode(), WORKDIR, timeout, code=True)

    async def write_file(self, path: str, data: bytes) -> str:
        out = await self._exec(["sh", "-c", WRITE, "sh", path], data, WORKDIR, FILE_TIMEOUT)
        if out.exit_code != 0:
            raise SandboxError(f"cannot write {path}: {_reason(out)}")
        return _absolute(path)

    async def read_file(self, path: str, max_bytes: int) -> bytes:
        argv = ["head", "-c", str(max_bytes + 1), "--", path]
        out = await self._exec(argv, None, WORKDIR, FILE_TIMEOUT, limit=max_bytes + 1)
        if out.exit_code != 0:
            raise SandboxError(f"cannot read {path}: {_reason(out)}")
        if len(out.stdout) > max_bytes:
            raise SandboxError(
                f"{path} is larger than {max_bytes} bytes, the most read_file returns; "
                "read a part of it with run_command (head, tail, sed -n)"
            )
        return out.stdout

    async def list_files(self, path: str) -> list[Entry]:
        folder = _absolute(path)
        out = await self._exec(["sh", "-c", LIST, "sh", folder], None, WORKDIR, FILE_TIMEOUT)
        if out.exit_code != 0:
            raise SandboxError(f"cannot list {path}: {_reason(out)}")
        entries = []
        for record in out.stdout.decode(errors="replace").split("\0"):
            kind, _, rest = record.partition("\t")
            size, _, name = rest.partition("\t")
            if name:
                path_of = posixpath.join(folder, name)
                entries.append(Entry(name, path_of, TYPES.get(kind, "other"), int(size or 0)))
        return sorted(entries, key=lambda e: e.name)[:MAX_ENTRIES]

    async def close(self) -> None:
        await _remove(self._api, self._container)

    async def read_counters(self) -> Counters | None:
        """Read the sandbox's OOM-kill and refused-fork counts; None when they cannot be read
        (e.g. while a runaway process holds every process slot)."""
        try:
            out = await self._exec(["sh", "-c", COUNTERS], None, "/", FILE_TIMEOUT)
        except SandboxError:
            return None
        values = dict(
            (name, int(value))
            for name, _, value in (line.partition(" ") for line in out.stdout.decode().split("\n"))
            if value.strip().isdigit()
        )
        counters = Counters(values.get("oom_kill", 0), values.get("pids_max", 0))
        self._counters = counters
        return counters

    async def _run(
        self, argv: list[str], stdin: bytes | None, cwd: str, timeout: float, *, code: bool
    ) -> Execution:
        # `timeout` makes itself a process group leader and signals the whole group: TERM at
        # `timeout` seconds, KILL one second later.
        wrapped = ["timeout", f"--kill-after={KILL_AFTER}", f"{timeout:g}", *argv]
        async with self._runs:
            before = self._counters
            started = anyio.current_time()
            out = await self._exec(wrapped, stdin, cwd, timeout + KILL_AFTER + EXEC_GRACE)
            elapsed = anyio.current_time() - started
            after = await self.read_counters()
        limits = []
        if after is not None and after.oom_kills > before.oom_kills:
            limits.append("memory")
        if after is not None and after.refused_forks > before.refused_forks:
            limits.append("pids")
        timed_out = not out.complete or (
            out.exit_code in TIMEOUT_EXITS and elapsed >= timeout and "memory" not in limits
        )
        stderr = out.text(2)
        return Execution(
            stdout=out.text(1),
            stderr=stderr,
            exit_code=out.exit_code,
            error=self._explain(out, timeout, timed_out, limits, stderr if code else ""),
            timed_out=timed_out,
            limits_hit=tuple(limits),
        )

    def _explain(
        self, out: Output, timeout: float, timed_out: bool, limits: list[str], stderr: str
    ) -> str | None:
        reasons = []
        if "memory" in limits:
            reasons.append(
                f"killed: the sandbox ran out of memory (its limit is "
                f"{self._limits.memory / 2**20:g} MiB)"
            )
        if timed_out:
            reasons.append(
                f"timed out after {timeout:g} s and was stopped"
                if out.complete
                else f"timed out after {timeout:g} s; processes it left may still be running"
            )
        if "pids" in limits:
            reasons.append(
                f"the sandbox's process limit ({self._limits.pids}) was reached: "
                "some processes could not be started"
            )
        if not reasons and out.exit_code:
            status = f"exit status {out.exit_code}"
            if out.exit_code > 128:
                status += f" (killed by signal {out.exit_code - 128})"
            last = next((line for line in reversed(stderr.splitlines()) if line.strip()), "")
            reasons.append(f"{status}: {last.strip()}" if last else status)
        if reasons and out.exit_code is not None and not reasons[0].startswith("exit"):
            reasons[0] += f" (exit status {out.exit_code})"
        return "; ".join(reasons) or None

    async def _exec(
        self,
        argv: list[str],
        stdin: bytes | None,
        workdir: str,
        wait: float,
        limit: int = MAX_OUTPUT,
    ) -> Output:
        run = partial(
            _exec.run,
            self._api,
            self._container,
            user=USER,
            argv=argv,
            stdin=stdin,
            workdir=workdir,
            wait=wait,
            limit=limit,
        )
        return await _docker(run)


def _url_of(view: View) -> Callable[[], Awaitable[str]]:
    async def url() -> str:
        return view.url

    return url


def _policy(allow: Sequence[str]) -> EgressPolicy:
    try:
        return EgressPolicy.parse(allow)
    except (TypeError, ValueError) as e:
        raise SandboxError(f"allow_network: {e}") from e


def _reason(out: Output) -> str:
    """The gist of a failed file command's error message: the text after its last colon."""
    message = out.stderr.decode(errors="replace").strip().splitlines()
    if not message:
        return f"exit status {out.exit_code}"
    return message[-1].rsplit(": ", 1)[-1]


def _absolute(path: str) -> str:
    return posixpath.normpath(posixpath.join(WORKDIR, path))


def _own_container_id() -> str | None:
    """The id of the container this process runs in (Docker bind-mounts /etc/hostname from
    /var/lib/docker/containers/<id>/), or None outside a container."""
    try:
        mounts = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return None
    found = re.search(r"/containers/([0-9a-f]{64})/", mounts)
    return found.group(1) if found else None


def _owner_alive(api: docker.APIClient, owner: str) -> bool:
    kind, _, ident = owner.partition(":")
    if kind == "container":
        try:
            return bool(api.inspect_container(ident)["State"]["Running"])
        except docker.errors.NotFound:
            return False
    if kind == "process":
        host, _, pid = ident.rpartition(":")
        if host != socket.gethostname() or not pid.isdigit():
            return True  # not ours to judge
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return True


async def _remove(api: docker.APIClient, container: str) -> None:
    try:
        await anyio.to_thread.run_sync(partial(_remove_container, api, container))
    except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
        logger.warning("could not remove sandbox container %s: %s", container[:12], e)


def _remove_container(api: docker.APIClient, container: str) -> None:
    try:
        api.remove_container(container, force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as e:
        if e.status_code != 409:  # 409: its removal is already in progress
            raise


async def _docker(call: Callable[[], T]) -> T:
    """Run a blocking docker SDK call in a worker thread; its failures become SandboxError."""
    try:
        return await anyio.to_thread.run_sync(call, abandon_on_cancel=True)
    except docker.errors.ImageNotFound:
        raise
    except docker.errors.NotFound as e:
        raise SandboxError(f"the sandbox's container is gone: {e.explanation}") from e
    except docker.errors.APIError as e:
        if e.status_code == 409:
            raise SandboxError(f"the sandbox is not running any more: {e.explanation}") from e
        raise SandboxError(f"Docker refused: {e.explanation}") from e
    except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
        raise SandboxError(f"cannot reach Docker: {e}") from e
