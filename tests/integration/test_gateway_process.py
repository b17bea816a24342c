"""`cua-gateway run` as a real process with container servers: it supervises them, `ls` shows
them, SIGTERM removes them, and after a `kill -9` the next start removes what the dead one left."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import docker
import pytest

from cua_gateway.cli import main
from cua_gateway.front.status import fetch_status
from cua_gateway.runtime.docker import LABEL_INSTANCE
from tests.integration.conftest import containers_of, load, ready, running
from tests.integration.test_runtime_contract import free_port

pytestmark = pytest.mark.integration
START_TIMEOUT = 60.0


@contextmanager
def gateway_process(config: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    command = [sys.executable, "-m", "cua_gateway", "run", "-c", str(config), "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield process
    finally:
        process.kill()
        process.wait()
        assert process.stderr is not None
        process.stderr.close()


async def wait_ready(port: int, servers: int) -> dict[str, object]:
    """Poll `/readyz` until every server has all its replicas healthy."""
    url = f"http://127.0.0.1:{port}/readyz"
    with anyio.fail_after(START_TIMEOUT):
        while True:
            try:
                status = await anyio.to_thread.run_sync(fetch_status, url)
            except OSError:
                status = {}
            found = status.get("servers", {})
            healthy = [
                s
                for s in found.values()
                if all(r["state"] == "healthy" for r in s.get("replicas", [{}]))
            ]
            if len(healthy) == servers:
                return status
            await anyio.sleep(0.1)


def write_config(tmp_path: Path, gateway_name: str, test_image: str) -> Path:
    path = tmp_path / "gateway.yml"
    path.write_text(
        f"gateway: {{name: {gateway_name}}}\n"
        f"servers:\n"
        f'  pair: {{image: "{test_image}", replicas: 2}}\n'
        f'  single: {{image: "{test_image}"}}\n'
    )
    return path


def test_run_supervises_containers_ls_shows_them_and_sigterm_removes_them(
    tmp_path: Path,
    test_image: str,
    gateway_name: str,
    docker_api: docker.APIClient,
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = free_port()
    config = write_config(tmp_path, gateway_name, test_image)
    with gateway_process(config, port) as gateway:
        status = anyio.run(wait_ready, port, 2)
        assert status["ready"] is True
        assert len(containers_of(docker_api, gateway_name)) == 3

        assert main(["ls", "-c", str(config), "--url", f"http://127.0.0.1:{port}"]) == 0
        table = capsys.readouterr().out.splitlines()
        assert table[0].split()[:4] == ["SERVER", "STATE", "READY", "TOOLS"]
        tools = status["servers"]["pair"]["tools"]  # type: ignore[index]
        assert table[1].split()[:6] == ["pair", "ready", "2/2", str(tools), "(live)", "#0"]
        assert table[2].split()[:2] == ["#1", "healthy"]
        assert table[3].split()[:3] == ["single", "ready", "1/1"]

        gateway.send_signal(signal.SIGTERM)
        assert gateway.wait(timeout=30) == 0
    assert containers_of(docker_api, gateway_name) == []


def test_after_kill_9_of_the_gateway_the_next_start_removes_its_containers(
    tmp_path: Path, test_image: str, gateway_name: str, docker_api: docker.APIClient
) -> None:
    port = free_port()
    config = write_config(tmp_path, gateway_name, test_image)
    with gateway_process(config, port) as gateway:
        anyio.run(wait_ready, port, 2)
        gateway.send_signal(signal.SIGKILL)
        gateway.wait()
    orphans = containers_of(docker_api, gateway_name)
    assert len(orphans) == 3  # the dead gateway could not clean up
    dead_instance = {c["Labels"][LABEL_INSTANCE] for c in orphans}  # type: ignore[index]

    async def next_start() -> None:
        async with running(load(tmp_path, config.read_text())) as supervisor:
            await ready(supervisor.pool("pair"))
            await ready(supervisor.pool("single"))
            now = containers_of(docker_api, gateway_name)
            instances = {c["Labels"][LABEL_INSTANCE] for c in now}  # type: ignore[index]
            assert len(now) == 3
            assert not instances & dead_instance

    anyio.run(next_start)
    assert containers_of(docker_api, gateway_name) == []


def test_readyz_reports_json_for_each_server(
    tmp_path: Path, test_image: str, gateway_name: str
) -> None:
    port = free_port()
    config = write_config(tmp_path, gateway_name, test_image)
    with gateway_process(config, port):
        status = anyio.run(wait_ready, port, 2)
    pair = status["servers"]["pair"]  # type: ignore[index]
    assert pair["state"] == "ready"
    assert [r["index"] for r in pair["replicas"]] == [0, 1]
    assert pair["replicas"][0]["where"].startswith("container ")
    assert json.dumps(status)  # plain JSON all the way down
