"""Start-up and shutdown of many servers: concurrent, never blocked by a slow one, bounded."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
import docker
import pytest

from cua_gateway.downstream.pool import ServerPool
from cua_gateway.downstream.replica import ReplicaState
from tests.integration.conftest import containers_of, load, ready, running, text_of, until
from tests.integration.test_runtime_contract import free_port

pytestmark = pytest.mark.integration
HANGS = f'command: "{sys.executable}", args: ["-c", "import time; time.sleep(600)"]'


def test_a_server_that_never_answers_does_not_hold_up_the_others_or_the_shutdown(
    tmp_path: Path, test_image: str, gateway_name: str, docker_api: docker.APIClient
) -> None:
    loaded = load(
        tmp_path,
        f"""
        gateway: {{name: {gateway_name}, shutdown_timeout: 5s}}
        servers:
          mute: {{{HANGS}, healthcheck: {{start_timeout: 10m}}}}
          quick: {{image: "{test_image}"}}
        """,
    )

    async def scenario() -> None:
        with anyio.fail_after(30):  # bounded start and bounded shutdown, mute server or not
            async with running(loaded) as supervisor:
                await ready(supervisor.pool("quick"))
                mute = supervisor.pool("mute").replicas[0]
                assert mute.state is ReplicaState.STARTING
                status = supervisor.status()
                assert status["mute"]["ready"] is False
                assert status["quick"]["ready"] is True

    anyio.run(scenario)
    assert containers_of(docker_api, gateway_name) == []


def test_a_server_that_does_not_answer_initialize_in_time_is_restarted_with_the_reason(
    tmp_path: Path, gateway_name: str
) -> None:
    loaded = load(
        tmp_path,
        f"""
        gateway: {{name: {gateway_name}}}
        servers:
          mute: {{{HANGS}, healthcheck: {{start_timeout: 300ms}},
                  restart: {{policy: always, backoff_initial: 50ms}}}}
        """,
    )

    async def scenario() -> None:
        async with running(loaded) as supervisor:
            mute = supervisor.pool("mute").replicas[0]
            with anyio.fail_after(20):
                while mute.restarts < 1:
                    await mute.next_change().wait()
            assert mute.last_error == "mute#0: no answer to initialize within 0.3s"

    anyio.run(scenario)


def test_tools_are_listed_from_the_last_known_catalog_while_a_server_starts(
    tmp_path: Path, test_image: str, gateway_name: str
) -> None:
    text = f"""
        gateway: {{name: {gateway_name}, state_dir: ./state}}
        servers:
          remembered: {{image: "{test_image}"}}
        """

    async def first_run() -> None:
        async with running(load(tmp_path, text)) as supervisor:
            await ready(supervisor.pool("remembered"))

    async def second_run() -> None:
        async with running(load(tmp_path, text)) as supervisor:
            pool = supervisor.pool("remembered")
            assert not pool.ready
            status = pool.status()
            assert status["tools_source"] == "cache"
            assert "echo" in {t["name"] for t in pool.tools}
            await ready(pool)
            assert pool.status()["tools_source"] == "live"

    anyio.run(first_run)
    assert (tmp_path / "state" / "catalog" / "remembered.tools.json").is_file()
    anyio.run(second_run)


def test_containers_can_serve_streamable_http_on_the_host_network(
    tmp_path: Path, test_image: str, gateway_name: str, docker_api: docker.APIClient
) -> None:
    port = free_port()
    loaded = load(
        tmp_path,
        f"""
        gateway: {{name: {gateway_name}}}
        servers:
          web:
            image: "{test_image}"
            args: [http]
            transport: streamable-http
            port: {port}
            network: host
            replicas: 2
        """,
    )

    async def scenario() -> None:
        async with running(loaded) as supervisor:
            pool = supervisor.pool("web")
            await ready(pool)
            wheres = [r.status().where or "" for r in pool.replicas]
            assert wheres[0].endswith(f"http://127.0.0.1:{port}/mcp")
            assert wheres[1].endswith(f"http://127.0.0.1:{port + 1}/mcp")
            replicas = set()
            for _ in range(4):
                result = await pool.request("tools/call", {"name": "whoami", "arguments": {}})
                replicas.add(json.loads(text_of(result))["replica"])
            assert replicas == {"0", "1"}

    anyio.run(scenario)
    assert containers_of(docker_api, gateway_name) == []


def test_an_on_demand_server_starts_at_its_first_call_and_stops_when_idle(
    tmp_path: Path, test_image: str, gateway_name: str, docker_api: docker.APIClient
) -> None:
    loaded = load(
        tmp_path,
        f"""
        gateway: {{name: {gateway_name}}}
        servers:
          lazy: {{image: "{test_image}", lifetime: {{mode: on_demand, idle_timeout: 500ms}}}}
        """,
    )

    async def call(pool: ServerPool) -> str:
        return text_of(
            await pool.request("tools/call", {"name": "echo", "arguments": {"text": "up"}})
        )

    async def scenario() -> None:
        async with running(loaded) as supervisor:
            pool = supervisor.pool("lazy")
            replica = pool.replicas[0]
            assert replica.state is ReplicaState.IDLE
            assert containers_of(docker_api, gateway_name) == []

            assert await call(pool) == "up"
            assert len(containers_of(docker_api, gateway_name)) == 1
            await until(pool, lambda: replica.state is ReplicaState.IDLE, timeout=15)
            assert containers_of(docker_api, gateway_name) == []
            assert replica.restarts == 0  # going idle is not a failure
            status = supervisor.status()["lazy"]
            assert (status["state"], status["ready"]) == ("idle", True)

            assert await call(pool) == "up"  # and it comes back for the next call

    anyio.run(scenario)
    assert containers_of(docker_api, gateway_name) == []
