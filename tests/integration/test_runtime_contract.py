"""The same contract for every runtime: a server starts, answers, survives the loss of its replica,
and leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import docker
import pytest

from cua_gateway.downstream.pool import ServerPool
from cua_gateway.errors import ServerError
from tests.integration.conftest import (
    TEST_SERVER,
    containers_of,
    load,
    ready,
    running,
    text_of,
    until,
)

pytestmark = pytest.mark.integration
SERVER_SCRIPT = TEST_SERVER / "server.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RemoteServer:
    """The test server over streamable HTTP in a process of the test's own."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [sys.executable, str(SERVER_SCRIPT), "http", "--port", str(self.port)]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()

    async def wait_listening(self) -> None:
        with anyio.fail_after(30):
            while True:
                try:
                    stream = await anyio.connect_tcp("127.0.0.1", self.port)
                except OSError:
                    await anyio.sleep(0.05)
                else:
                    await stream.aclose()
                    return


@pytest.fixture
def remote_server() -> Iterator[RemoteServer]:
    server = RemoteServer()
    server.start()
    yield server
    server.stop()


def server_yaml(kind: str, test_image: str, remote: RemoteServer) -> str:
    if kind == "docker":
        return f'image: "{test_image}"'
    if kind == "process":
        return f'command: "{sys.executable}", args: ["{SERVER_SCRIPT}"]'
    return f'url: "http://127.0.0.1:{remote.port}/mcp"'


async def whoami(pool: ServerPool) -> dict[str, object]:
    result = await pool.request("tools/call", {"name": "whoami", "arguments": {}})
    answer: dict[str, object] = json.loads(text_of(result))
    return answer


@pytest.mark.parametrize("kind", ["docker", "process", "remote"])
def test_runtime_contract(
    kind: str,
    tmp_path: Path,
    test_image: str,
    gateway_name: str,
    docker_api: docker.APIClient,
    remote_server: RemoteServer,
) -> None:
    loaded = load(
        tmp_path,
        f"""
        gateway: {{name: {gateway_name}, health_check_interval: 300ms}}
        servers:
          subject: {{{server_yaml(kind, test_image, remote_server)}, timeout: 15s,
            healthcheck: {{timeout: 1s, failures: 2}},
            restart: {{policy: always, backoff_initial: 100ms, backoff_max: 500ms}}}}
        """,
    )
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    async def scenario() -> None:
        if kind == "remote":
            await remote_server.wait_listening()
        async with running(loaded) as supervisor:
            pool = supervisor.pool("subject")
            await ready(pool)
            assert pool.config.runtime == kind

            # it answers: tools, a call, progress, and a tool's own error as a result
            tools = {t["name"] for t in (await pool.request("tools/list"))["tools"]}
            assert {"echo", "slow", "whoami", "work"} <= tools
            echoed = await pool.request("tools/call", {"name": "echo", "arguments": {"text": kind}})
            assert text_of(echoed) == kind
            slept = await pool.request(
                "tools/call",
                {"name": "slow", "arguments": {"seconds": 0.35}},
                on_progress=on_progress,
            )
            assert text_of(slept) == "slept 0.35"
            assert progress and progress[-1] == pytest.approx(0.35)
            refused = await pool.request("tools/call", {"name": "add", "arguments": {"a": "x"}})
            assert refused["isError"] is True

            # it survives the loss of its replica
            before = await whoami(pool)
            if kind == "remote":
                remote_server.stop()
            else:
                with pytest.raises(ServerError, match=r"subject#0: lost during tools/call"):
                    await pool.request("tools/call", {"name": "crash", "arguments": {"code": 9}})
            if kind == "remote":
                await until(pool, lambda: not pool.ready)
                remote_server.start()
            await until(pool, lambda: pool.replicas[0].restarts >= 1 and pool.ready)
            after = await whoami(pool)
            assert after["pid"] != before["pid"] or kind == "docker"  # a container's pid is 1
            assert (
                text_of(
                    await pool.request(
                        "tools/call", {"name": "echo", "arguments": {"text": "again"}}
                    )
                )
                == "again"
            )
            last_pid = after["pid"]

        # nothing is left behind
        if kind == "process":
            assert isinstance(last_pid, int)
            with pytest.raises(ProcessLookupError):
                os.kill(last_pid, signal.SIG_DFL)

    anyio.run(scenario)
    assert containers_of(docker_api, gateway_name) == []
