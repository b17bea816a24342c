"""The `docker` runtime: each replica is a long-lived, labelled, locked-down container.

MCP travels over the container's attached stdin/stdout, or over HTTP to a port it serves. All calls
of the (blocking) docker SDK run in worker threads.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import docker
import docker.errors
import requests
from anyio.abc import SocketStream, TaskGroup

from cua_gateway.errors import GatewayError, StartError
from cua_gateway.runtime import _attach
from cua_gateway.runtime._wire import pipes
from cua_gateway.runtime.base import Exit, Link, ReplicaSpec
from cua_gateway.runtime.images import ensure_image, image_tag
from cua_gateway.runtime.remote import http_link

logger = logging.getLogger(__name__)

LABEL = "io.cua-gateway"
LABEL_GATEWAY = f"{LABEL}.gateway"
LABEL_INSTANCE = f"{LABEL}.instance"
LABEL_OWNER = f"{LABEL}.owner"
LABEL_SERVER = f"{LABEL}.server"
LABEL_REPLICA = f"{LABEL}.replica"

API_TIMEOUT = 60  # seconds for one Docker API call
STOP_GRACE = 2.0  # seconds a replica gets to exit by itself once its stdin is closed
REMOVE_TIMEOUT = 15.0  # seconds to force-remove a container at teardown
PORT_POLL = 0.05  # seconds between attempts to reach a starting container's HTTP port
TMPFS = "rw,nosuid,nodev,size=64m"  # /tmp of a read-only container


def owner_id() -> str:
    """Who owns the containers this process starts: `hostname:pid`."""
    return f"{socket.gethostname()}:{os.getpid()}"


class DockerRuntime:
    def __init__(self, gateway: str, instance: str, owner: str) -> None:
        self._gateway = gateway
        self._instance = instance
        self._owner = owner
        self._api: docker.APIClient | None = None
        self._lock = anyio.Lock()

    async def _client(self) -> docker.APIClient:
        async with self._lock:
            if self._api is None:
                try:
                    self._api = await anyio.to_thread.run_sync(
                        partial(docker.APIClient, version="auto", timeout=API_TIMEOUT)
                    )
                except docker.errors.DockerException as e:
                    raise GatewayError(f"Docker is not reachable: {e}") from e
            api: docker.APIClient = self._api
            return api

    async def prepare(self, spec: ReplicaSpec) -> None:
        await ensure_image(await self._client(), spec.server, spec.config)

    @asynccontextmanager
    async def open(self, spec: ReplicaSpec) -> AsyncIterator[Link]:
        api = await self._client()
        container = await self._create(api, spec)
        exit = Exit()
        try:
            async with anyio.create_task_group() as tasks:
                if spec.config.effective_transport == "stdio":
                    link = self._stdio(api, container, spec, exit, tasks)
                else:
                    link = self._http(api, container, spec, exit, tasks)
                try:
                    async with link as started:
                        yield started
                except Exception:
                    await exit.learn()
                    raise
                finally:
                    exit.stopping = True
                    tasks.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(REMOVE_TIMEOUT):
                await _remove(api, container)

    async def _create(self, api: docker.APIClient, spec: ReplicaSpec) -> str:
        config = spec.config
        _check_host_paths(spec)
        limits = config.resources
        host_config = api.create_host_config(
            nano_cpus=int(limits.cpu * 1e9) if limits.cpu else None,
            mem_limit=limits.memory,
            memswap_limit=limits.memory,  # no swap beyond the limit
            pids_limit=limits.pids,
            network_mode=config.network,
            binds=[
                f"{v.source}:{v.target}:{'ro' if v.read_only else 'rw'}" for v in config.volumes
            ],
            security_opt=["no-new-privileges:true"],
            cap_drop=["ALL"],
            read_only=config.read_only,
            tmpfs={"/tmp": TMPFS} if config.read_only else None,  # noqa: S108 (in the container)
            init=True,  # reaps the server's zombie children
        )
        stdio = config.effective_transport == "stdio"
        environment = spec.environment
        if not stdio:
            environment["MCP_PORT"] = str(_port(spec))
        labels = {
            LABEL_GATEWAY: self._gateway,
            LABEL_INSTANCE: self._instance,
            LABEL_OWNER: self._owner,
            LABEL_SERVER: spec.server,
            LABEL_REPLICA: str(spec.index),
        }
        create = partial(
            api.create_container,
            image_tag(spec.server, config),
            command=config.args or None,
            stdin_open=stdio,
            detach=False,  # with stdin_open: StdinOnce, so closing our stdin ends the server's
            tty=False,
            environment=environment,
            labels=labels,
            user=config.user,
            name=f"cua-{self._gateway}-{spec.server}-{spec.index}-{self._instance[:8]}",
            host_config=host_config,
        )
        try:
            created: dict[str, Any] = await anyio.to_thread.run_sync(create)
        except docker.errors.APIError as e:
            raise StartError(
                spec.server, spec.index, f"cannot create container: {e.explanation}"
            ) from e
        return str(created["Id"])

    @asynccontextmanager
    async def _stdio(
        self, api: docker.APIClient, container: str, spec: ReplicaSpec, exit: Exit, tasks: TaskGroup
    ) -> AsyncIterator[Link]:
        params = {"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
        try:
            attached = await anyio.to_thread.run_sync(
                partial(api.attach_socket, container, params=params)
            )
            sock: SocketStream = await anyio.abc.UNIXSocketStream.from_socket(attached._sock)
        except docker.errors.APIError as e:
            raise StartError(
                spec.server, spec.index, f"cannot attach: {e.explanation}", container_id=container
            ) from e
        await _start(api, container, spec, exit, tasks)
        inbound_send, inbound_receive, outbound_send, outbound_receive = pipes()
        link = Link(inbound_receive, outbound_send, exit, f"container {container[:12]}")
        stderr = _attach.StderrLines(partial(_log_stderr, spec), link.stderr_tail)
        tasks.start_soon(_attach.pump_out, sock, inbound_send, stderr)
        tasks.start_soon(_attach.pump_in, sock, outbound_receive, inbound_send)
        try:
            yield link
        except Exception:
            await exit.learn()
            raise
        finally:
            with anyio.CancelScope(shield=True):
                exit.stopping = True
                await outbound_send.aclose()
                with suppress(OSError, anyio.ClosedResourceError, anyio.BrokenResourceError):
                    await sock.send_eof()  # the server's stdin closes: it may exit by itself
                await _wait_stopped(api, container, STOP_GRACE)
                await inbound_receive.aclose()
                await sock.aclose()
                attached.close()

    @asynccontextmanager
    async def _http(
        self, api: docker.APIClient, container: str, spec: ReplicaSpec, exit: Exit, tasks: TaskGroup
    ) -> AsyncIterator[Link]:
        await _start(api, container, spec, exit, tasks)
        host = await _address(api, container, spec.config.network)
        port = _port(spec)
        await _wait_for_port(host, port, exit, spec)
        url = f"http://{host}:{port}{spec.config.path}"
        async with http_link(
            url, spec.config.headers, exit, f"container {container[:12]} {url}"
        ) as link:
            yield link

    async def reap_orphans(self) -> list[str]:
        """Remove containers of this gateway left behind by an instance that died."""
        api = await self._client()
        found = await anyio.to_thread.run_sync(
            partial(
                api.containers, all=True, filters={"label": [f"{LABEL_GATEWAY}={self._gateway}"]}
            )
        )
        orphans = [
            str(c["Id"])
            for c in found
            if c["Labels"].get(LABEL_INSTANCE) != self._instance
            and not _owner_alive(c["Labels"].get(LABEL_OWNER, ""))
        ]
        for container in orphans:
            await _remove(api, container)
        if orphans:
            logger.warning("removed %d containers left by a gateway that died", len(orphans))
        return orphans

    async def remove_all(self) -> list[str]:
        """Remove every container of this instance that is still there (the last safety net)."""
        if self._api is None:
            return []
        api = self._api
        found = await anyio.to_thread.run_sync(
            partial(
                api.containers, all=True, filters={"label": [f"{LABEL_INSTANCE}={self._instance}"]}
            )
        )
        for c in found:
            await _remove(api, str(c["Id"]))
        return [str(c["Id"]) for c in found]

    async def aclose(self) -> None:
        if self._api is not None:
            await anyio.to_thread.run_sync(self._api.close)


async def _start(
    api: docker.APIClient, container: str, spec: ReplicaSpec, exit: Exit, tasks: TaskGroup
) -> None:
    """Start the container, then watch for its end (a wait before the start returns at once)."""
    try:
        await anyio.to_thread.run_sync(api.start, container)
    except docker.errors.APIError as e:
        raise StartError(
            spec.server,
            spec.index,
            f"cannot start container: {e.explanation}",
            container_id=container,
        ) from e
    tasks.start_soon(_watch_exit, api, container, exit)


def _check_host_paths(spec: ReplicaSpec) -> None:
    """A read-only mount of a missing host path is a mistake (Docker would mount an empty,
    root-owned folder in its place); a missing writable one is created, as a folder."""
    for volume in spec.config.volumes:
        source = Path(volume.source)
        if not source.is_absolute() or source.exists():
            continue
        if volume.read_only:
            raise StartError(spec.server, spec.index, f"volume source {source} does not exist")
        source.mkdir(parents=True, exist_ok=True)


def _port(spec: ReplicaSpec) -> int:
    """Replicas sharing the host's network each listen on their own port: `port + index`."""
    assert spec.config.port is not None
    return spec.config.port + (spec.index if spec.config.network == "host" else 0)


async def _address(api: docker.APIClient, container: str, network: str) -> str:
    if network == "host":
        return "127.0.0.1"
    info = await anyio.to_thread.run_sync(api.inspect_container, container)
    return str(info["NetworkSettings"]["Networks"][network]["IPAddress"])


async def _wait_for_port(host: str, port: int, exit: Exit, spec: ReplicaSpec) -> None:
    while True:
        if exit.event.is_set():
            raise StartError(spec.server, spec.index, exit.reason, exit_status=exit.status)
        try:
            stream = await anyio.connect_tcp(host, port)
        except OSError:
            await anyio.sleep(PORT_POLL)
        else:
            await stream.aclose()
            return


async def _wait_stopped(api: docker.APIClient, container: str, grace: float) -> None:
    """Give the container `grace` seconds to stop by itself (its watcher may be cancelled)."""
    wait = partial(api.wait, container, timeout=max(1, round(grace)))
    with suppress(docker.errors.DockerException, requests.exceptions.RequestException):
        await anyio.to_thread.run_sync(wait, abandon_on_cancel=True)


async def _watch_exit(api: docker.APIClient, container: str, exit: Exit) -> None:
    try:
        result = await anyio.to_thread.run_sync(
            partial(api.wait, container, timeout=None), abandon_on_cancel=True
        )
        state = (await anyio.to_thread.run_sync(api.inspect_container, container))["State"]
    except docker.errors.DockerException as e:
        exit.set(f"lost track of the container: {e}")
        return
    status = result.get("StatusCode")
    oom = " (out of memory)" if state.get("OOMKilled") else ""
    exit.set(f"container exited with status {status}{oom}", status)


async def _remove(api: docker.APIClient, container: str) -> None:
    try:
        await anyio.to_thread.run_sync(partial(api.remove_container, container, force=True))
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as e:
        if e.status_code != 409:  # 409: removal already in progress
            logger.warning("could not remove container %s: %s", container[:12], e.explanation)


def _owner_alive(owner: str) -> bool:
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # not ours to judge
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _log_stderr(spec: ReplicaSpec, line: str) -> None:
    logger.info("stderr: %s", line, extra={"server": spec.server, "replica": spec.index})
