"""The e2b server's local backend, built from servers/e2b and started by the gateway from its
shipped entry: each sandbox is a container the server starts through the host's Docker socket.

The e2b (cloud) backend is covered by servers/e2b/tests (a fake of the SDK): E2B's cloud is not
reachable from here.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from functools import partial
from typing import Any

import anyio
import docker
import pytest

from cua_gateway.downstream.pool import ServerPool
from tests.e2e.conftest import call, e2b_server, fails
from tests.integration.conftest import containers_of, until

pytestmark = pytest.mark.e2e

LABEL_SANDBOX = "io.cua-gateway.e2b.sandbox"
GONE_TIMEOUT = 15.0  # seconds for an expired sandbox's container to be removed


class Sandboxes:
    """The sandboxes a test created, removed at teardown whatever happened."""

    def __init__(self, api: docker.APIClient) -> None:
        self.api = api
        self.ids: list[str] = []

    def containers(self, sandbox_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.api.containers(
            all=True, filters={"label": f"{LABEL_SANDBOX}={sandbox_id}"}
        )
        return found

    def wait_destroyed(self, sandbox_id: str, since: float) -> bool:
        """Block until Docker reports the sandbox's container destroyed (True), or until
        GONE_TIMEOUT has passed (False). Events since `since` count, so none is missed."""
        [container] = self.containers(sandbox_id) or [{"Id": None}]
        if container["Id"] is None:
            return True
        events = self.api.events(
            since=int(since),
            until=int(time.time() + GONE_TIMEOUT),
            filters={"container": container["Id"], "event": "destroy"},
            decode=True,
        )
        return any(True for _ in events)

    def remove_all(self) -> None:
        for sandbox_id in self.ids:
            for container in self.containers(sandbox_id):
                self.api.remove_container(container["Id"], force=True)


@pytest.fixture
def sandboxes(docker_api: docker.APIClient) -> Iterator[Sandboxes]:
    recorded = Sandboxes(docker_api)
    yield recorded
    recorded.remove_all()


async def create(pool: ServerPool, sandboxes: Sandboxes, **arguments: Any) -> str:
    sandbox_id: str = (await call(pool, "create_sandbox", **arguments))["sandbox_id"]
    sandboxes.ids.append(sandbox_id)
    return sandbox_id


def test_runs_python_that_reads_a_file_written_into_a_locked_down_sandbox(
    gateway_name: str, sandboxes: Sandboxes, docker_api: docker.APIClient
) -> None:
    async def scenario() -> None:
        async with e2b_server(gateway_name) as pool:
            tools = {t["name"] for t in (await pool.request("tools/list"))["tools"]}
            assert {
                "create_sandbox",
                "run_code",
                "run_command",
                "write_file",
                "read_file",
                "list_files",
                "close_sandbox",
            } <= tools
            created = await call(pool, "create_sandbox")
            sandbox = created["sandbox_id"]
            sandboxes.ids.append(sandbox)
            assert created["backend"] == "local"
            assert created["workdir"] == "/home/user"

            written = await call(
                pool,
                "write_file",
                sandbox_id=sandbox,
                path="data/in.csv",
                content="a,b\n1,2\n3,4\n",
            )
            assert written == {"path": "/home/user/data/in.csv", "size": 12}
            ran = await call(
                pool,
                "run_code",
                sandbox_id=sandbox,
                code="import csv\n"
                "rows = list(csv.DictReader(open('data/in.csv')))\n"
                "print(sum(int(r['b']) for r in rows))\n",
            )
            assert ran["exit_code"] == 0, ran
            assert ran["stdout"] == "6\n"
            assert ran["error"] is None

            command = await call(
                pool, "run_command", sandbox_id=sandbox, command="wc -l < in.csv", cwd="data"
            )
            assert command["stdout"].strip() == "3"
            listed = await call(pool, "list_files", sandbox_id=sandbox, path="data")
            assert listed["entries"] == [
                {"name": "in.csv", "path": "/home/user/data/in.csv", "type": "file", "size": 12}
            ]
            read = await call(pool, "read_file", sandbox_id=sandbox, path="/home/user/data/in.csv")
            assert read["content"] == "a,b\n1,2\n3,4\n"
            failed = await call(pool, "run_code", sandbox_id=sandbox, code="1 / 0")
            assert failed["exit_code"] == 1
            assert failed["error"] == "exit status 1: ZeroDivisionError: division by zero"
            message = await fails(pool, "read_file", sandbox_id=sandbox, path="missing.txt")
            assert "cannot read missing.txt: No such file or directory" in message
            message = await fails(
                pool, "write_file", sandbox_id=sandbox, path="/usr/evil", content="x"
            )
            assert "Read-only file system" in message

            # the container behind it: no network, read-only, limited, unprivileged, labelled
            [container] = sandboxes.containers(sandbox)
            info = docker_api.inspect_container(container["Id"])
            host = info["HostConfig"]
            assert host["NetworkMode"] == "none"
            assert host["ReadonlyRootfs"] is True
            assert host["Memory"] == 256 * 2**20
            assert host["PidsLimit"] == 64
            assert host["NanoCpus"] == 500_000_000
            assert host["CapDrop"] == ["ALL"]
            assert info["Config"]["User"] == "1000:1000"
            assert info["Config"]["Labels"]["io.cua-gateway.gateway"] == gateway_name

            closed = await call(pool, "close_sandbox", sandbox_id=sandbox)
            assert closed == {"closed": sandbox}
            assert sandboxes.containers(sandbox) == []
            message = await fails(pool, "run_command", sandbox_id=sandbox, command="true")
            assert f"sandbox {sandbox} is closed" in message

    anyio.run(scenario)


def test_a_memory_hog_is_killed_with_status_137_and_reported_as_out_of_memory(
    gateway_name: str, sandboxes: Sandboxes
) -> None:
    async def scenario() -> None:
        async with e2b_server(gateway_name) as pool:
            sandbox = await create(pool, sandboxes)
            hog = await call(
                pool,
                "run_code",
                sandbox_id=sandbox,
                code="data = b'x' * (600 * 2**20)\nprint('survived')",
            )
            assert hog["exit_code"] == 137
            assert hog["limits_hit"] == ["memory"]
            assert "out of memory" in hog["error"]
            assert "256 MiB" in hog["error"]
            assert "survived" not in hog["stdout"]
            after = await call(pool, "run_code", sandbox_id=sandbox, code="print('still here')")
            assert after["stdout"] == "still here\n"

    anyio.run(scenario)


def test_a_fork_bomb_is_contained_by_the_process_limit_and_reported(
    gateway_name: str, sandboxes: Sandboxes
) -> None:
    bomb = (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    )

    async def scenario() -> None:
        async with e2b_server(gateway_name) as pool:
            sandbox = await create(pool, sandboxes)
            ran = await call(pool, "run_code", sandbox_id=sandbox, code=bomb, timeout=3)
            assert "pids" in ran["limits_hit"]
            assert "process limit (64) was reached" in ran["error"]
            assert ran["timed_out"] is True
            # every process of the bomb is gone: the sandbox and the server still answer
            alive = await call(
                pool,
                "run_command",
                sandbox_id=sandbox,
                command="echo alive; cat /sys/fs/cgroup/pids/pids.current",
            )
            assert alive["stdout"].split()[0] == "alive"
            assert int(alive["stdout"].split()[1]) < 10
            listed = await call(pool, "list_sandboxes")
            assert [s["sandbox_id"] for s in listed["sandboxes"]] == [sandbox]

    anyio.run(scenario)


def test_a_sandbox_has_no_network(gateway_name: str, sandboxes: Sandboxes) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        socket.create_connection(("127.0.0.1", port), timeout=5).close()  # reachable from here

        async def scenario() -> None:
            async with e2b_server(gateway_name) as pool:
                sandbox = await create(pool, sandboxes)
                ran = await call(
                    pool,
                    "run_code",
                    sandbox_id=sandbox,
                    code="import socket\n"
                    "print([name for _, name in socket.if_nameindex()])\n"
                    f"socket.create_connection(('127.0.0.1', {port}), timeout=5)\n",
                )
                assert ran["stdout"] == "['lo']\n"
                assert ran["exit_code"] == 1
                assert ran["error"].endswith(
                    "ConnectionRefusedError: [Errno 111] Connection refused"
                )

        anyio.run(scenario)


def test_two_sandboxes_do_not_see_each_other(gateway_name: str, sandboxes: Sandboxes) -> None:
    async def scenario() -> None:
        async with e2b_server(gateway_name) as pool:
            first = await create(pool, sandboxes)
            second = await create(pool, sandboxes)
            await call(pool, "write_file", sandbox_id=first, path="secret.txt", content="first's")
            await call(pool, "run_command", sandbox_id=first, command="echo tmp > /tmp/mark")
            assert (await call(pool, "list_files", sandbox_id=second))["entries"] == []
            message = await fails(pool, "read_file", sandbox_id=second, path="secret.txt")
            assert "No such file or directory" in message
            looked = await call(
                pool,
                "run_command",
                sandbox_id=second,
                command="ls /tmp; ls /home/user",
            )
            assert looked["stdout"] == ""
            mine = await call(pool, "read_file", sandbox_id=first, path="secret.txt")
            assert mine["content"] == "first's"

    anyio.run(scenario)


def test_an_idle_sandbox_expires_and_leaves_no_container(
    gateway_name: str, sandboxes: Sandboxes, docker_api: docker.APIClient
) -> None:
    async def scenario() -> None:
        started = time.time() - 1
        async with e2b_server(gateway_name) as pool:
            lasting = await create(pool, sandboxes)
            brief = await create(pool, sandboxes, idle_timeout=1)
            assert len(sandboxes.containers(brief)) == 1
            destroyed = partial(sandboxes.wait_destroyed, brief, started)
            assert await anyio.to_thread.run_sync(destroyed, abandon_on_cancel=True)
            assert sandboxes.containers(brief) == []
            message = await fails(pool, "run_command", sandbox_id=brief, command="true")
            assert "closed: it was idle for 1 s" in message
            # the other one, with the default idle timeout, is still there
            ran = await call(pool, "run_command", sandbox_id=lasting, command="echo here")
            assert ran["stdout"] == "here\n"
        # and stopping the server removes it
        assert sandboxes.containers(lasting) == []

    anyio.run(scenario)
    assert containers_of(docker_api, gateway_name) == []


def test_the_sandboxes_of_a_server_that_died_are_removed_by_its_successor(
    gateway_name: str, sandboxes: Sandboxes, docker_api: docker.APIClient
) -> None:
    async def scenario() -> None:
        started = time.time() - 1
        async with e2b_server(gateway_name) as pool:
            orphan = await create(pool, sandboxes)
            [server] = [
                c
                for c in containers_of(docker_api, gateway_name)
                if c["Labels"].get("io.cua-gateway.server") == "e2b"
            ]
            docker_api.kill(server["Id"])  # SIGKILL: no chance to clean up
            await until(pool, lambda: pool.replicas[0].restarts == 1 and pool.ready)
            destroyed = partial(sandboxes.wait_destroyed, orphan, started)
            assert await anyio.to_thread.run_sync(destroyed, abandon_on_cancel=True)
            message = await fails(pool, "run_command", sandbox_id=orphan, command="true")
            assert f"no sandbox {orphan}" in message

    anyio.run(scenario)
