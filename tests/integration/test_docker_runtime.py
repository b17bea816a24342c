"""The docker runtime against a real daemon: containers start, answer, are locked down, and go."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import anyio
import docker
import pytest

from cua_gateway.downstream.pool import ServerPool
from cua_gateway.downstream.replica import ReplicaState
from cua_gateway.errors import ReplicaLost
from cua_gateway.runtime.docker import LABEL_INSTANCE, LABEL_REPLICA, LABEL_SERVER
from tests.integration.conftest import containers_of, load, ready, running, text_of, until

pytestmark = pytest.mark.integration


def test_container_server_answers_tools_list_and_a_call(
    tmp_path: Path, test_image: str, gateway_name: str, docker_api: docker.APIClient
) -> None:
    loaded = load(
        tmp_path,
        f"""
        gateway: {{name: {gateway_name}}}
        servers:
          echo: {{image: "{test_image}"}}
        """,
    )

    async def scenario() -> None:
        async with running(loaded) as supervisor:
            pool = supervisor.pool("echo")
            await ready(pool)
            tools = await pool.request("tools/list")
            assert {"echo", "slow", "whoami"} <= {t["name"] for t in tools["tools"]}
            result = await pool.request(
                "tools/call", {"name": "echo", "arguments": {"text": "héllo ✓"}}
            )
            assert text_of(result) == "héllo ✓"
            assert pool.status()["tools_source"] == "live"

    anyio.run(scenario)
    assert containers_of(docker_api, gateway_name) == []


def test_limits_labels_network_and_read_only_settings_are_applied(
    tmp_path: Path, test_image: str, gateway_name: str, docker_api: docker.APIClient
) -> None:
    (tmp_path / "shared").mkdir()
    (tmp_path / "notes").mkdir()
    loaded = load(
        tmp_path,
        f"""
        gateway: {{name: {gateway_name}}}
        servers:
          locked:
            image: "{test_image}"
            resources: {{cpu: 500m, memory: 256Mi, pids: 64}}
            read_only: true
            volumes: ["./shared:/shared:rw", "./notes:/notes"]
            secrets: [API_TOKEN]
            environment: {{MODE: strict}}
        """,
        {"API_TOKEN": "s3cr3t-value"},
    )

    async def scenario() -> None:
        async with running(loaded) as supervisor:
            pool = supervisor.pool("locked")
            await ready(pool)

            async def call(tool: str, **arguments: object) -> str:
                result = await pool.request("tools/call", {"name": tool, "arguments": arguments})
                return text_of(result)

            assert await call("getenv", name="API_TOKEN") == "s3cr3t-value"
            assert await call("getenv", name="MODE") == "strict"
            assert "Read-only file system" in await call("try_write", path="/srv/x")
            assert "Read-only file system" in await call("try_write", path="/notes/x")
            assert await call("try_write", path="/shared/x") == "ok"
            assert await call("try_write", path="/tmp/x") == "ok"

            [container] = containers_of(docker_api, gateway_name)
            info = docker_api.inspect_container(container["Id"])
            host = info["HostConfig"]
            assert host["NanoCpus"] == 500_000_000
            assert host["Memory"] == 256 * 2**20
            assert host["PidsLimit"] == 64
            assert host["NetworkMode"] == "none"
            assert host["ReadonlyRootfs"] is True
            assert host["CapDrop"] == ["ALL"]
            assert "no-new-privileges:true" in host["SecurityOpt"]
            assert sorted(host["Binds"]) == [
                f"{tmp_path}/notes:/notes:ro",
                f"{tmp_path}/shared:/shared:rw",
            ]
            labels = info["Config"]["Labels"]
            assert labels[LABEL_SERVER] == "locked"
            assert labels[LABEL_REPLICA] == "0"
            assert labels[LABEL_INSTANCE]
            # the secret travels in the environment, never on a command line
            assert "API_TOKEN=s3cr3t-value" in info["Config"]["Env"]
            assert "s3cr3t-value" not in " ".join([info["Path"], *info["Args"]])

    anyio.run(scenario)
    assert containers_of(docker_api, gateway_name) == []


def test_kill_9_during_a_call_gives_a_clear_error_then_a_restarted_replica_answers(
    tmp_path: Path, test_image: str, gateway_name: str, docker_api: docker.APIClient
) -> None:
    loaded = load(
        tmp_path,
        f"""
        gateway: {{name: {gateway_name}}}
        servers:
          victim:
            image: "{test_image}"
            timeout: 20s
            restart: {{policy: on-failure, backoff_initial: 100ms}}
        """,
    )

    async def scenario() -> None:
        async with running(loaded) as supervisor:
            pool = supervisor.pool("victim")
            await ready(pool)
            [container] = containers_of(docker_api, gateway_name)
            failure: list[BaseException] = []

            async def long_call() -> None:
                try:
                    await pool.request("tools/call", {"name": "work", "arguments": {"seconds": 30}})
                except ReplicaLost as e:
                    failure.append(e)

            with anyio.fail_after(15):  # well within the call's own 20 s timeout
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(long_call)
                    await until(pool, lambda: pool.replicas[0].in_flight == 1, timeout=10)
                    await anyio.to_thread.run_sync(docker_api.kill, container["Id"])
            [error] = failure  # `work` is not idempotent: never sent twice
            assert "victim#0" in str(error)
            assert "status 137" in str(error)

            await ready(pool)
            assert pool.replicas[0].restarts == 1
            result = await pool.request(
                "tools/call", {"name": "echo", "arguments": {"text": "back"}}
            )
            assert text_of(result) == "back"
            [replacement] = containers_of(docker_api, gateway_name)
            assert replacement["Id"] != container["Id"]

    anyio.run(scenario)
    assert containers_of(docker_api, gateway_name) == []


def test_three_replicas_round_robin_spread_calls_evenly(
    tmp_path: Path, test_image: str, gateway_name: str
) -> None:
    loaded = load(
        tmp_path,
        f"""
        gateway: {{name: {gateway_name}}}
        servers:
          spread: {{image: "{test_image}", replicas: 3}}
        """,
    )

    async def scenario() -> None:
        async with running(loaded) as supervisor:
            pool = supervisor.pool("spread")
            await ready(pool)
            served = Counter([await whoami(pool) for _ in range(30)])
            assert served == {"0": 10, "1": 10, "2": 10}

    anyio.run(scenario)


def test_an_unhealthy_replica_receives_no_calls_until_it_recovers(
    tmp_path: Path, test_image: str, gateway_name: str, docker_api: docker.APIClient
) -> None:
    loaded = load(
        tmp_path,
        f"""
        gateway: {{name: {gateway_name}, health_check_interval: 200ms}}
        servers:
          flaky:
            image: "{test_image}"
            replicas: 3
            healthcheck: {{timeout: 300ms, failures: 1000}}
        """,
    )

    async def scenario() -> None:
        async with running(loaded) as supervisor:
            pool = supervisor.pool("flaky")
            await ready(pool)
            frozen = next(
                c["Id"]
                for c in containers_of(docker_api, gateway_name)
                if c["Labels"][LABEL_REPLICA] == "1"
            )
            docker_api.pause(frozen)  # alive, but answers nothing: pings time out
            try:
                await until(pool, lambda: pool.replicas[1].state is ReplicaState.UNHEALTHY)
                served = Counter([await whoami(pool) for _ in range(20)])
                assert served == {"0": 10, "2": 10}
            finally:
                docker_api.unpause(frozen)
            await until(pool, lambda: pool.replicas[1].state is ReplicaState.HEALTHY)
            assert pool.replicas[1].restarts == 0  # it recovered without a restart
            assert "1" in {await whoami(pool) for _ in range(3)}

    anyio.run(scenario)


def test_least_connections_prefers_the_idle_replica(
    tmp_path: Path, test_image: str, gateway_name: str
) -> None:
    loaded = load(
        tmp_path,
        f"""
        gateway: {{name: {gateway_name}, routing: {{strategy: least_connections}}}}
        servers:
          busy: {{image: "{test_image}", replicas: 2}}
        """,
    )

    async def scenario() -> None:
        async with running(loaded) as supervisor:
            pool = supervisor.pool("busy")
            await ready(pool)
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(
                    pool.request, "tools/call", {"name": "slow", "arguments": {"seconds": 3}}
                )
                await until(pool, lambda: sum(r.in_flight for r in pool.replicas) == 1)
                idle = next(r.index for r in pool.replicas if r.in_flight == 0)
                served = {await whoami(pool) for _ in range(5)}
                assert served == {str(idle)}
                tasks.cancel_scope.cancel()

    anyio.run(scenario)


async def whoami(pool: ServerPool) -> str:
    result = await pool.request("tools/call", {"name": "whoami", "arguments": {}})
    return str(json.loads(text_of(result))["replica"])


def test_an_idempotent_call_is_retried_on_the_restarted_replica(
    tmp_path: Path, test_image: str, gateway_name: str, docker_api: docker.APIClient
) -> None:
    loaded = load(
        tmp_path,
        f"""
        gateway: {{name: {gateway_name}}}
        servers:
          steady:
            image: "{test_image}"
            timeout: 30s
            restart: {{policy: always, backoff_initial: 100ms}}
        """,
    )

    async def scenario() -> None:
        async with running(loaded) as supervisor:
            pool = supervisor.pool("steady")
            await ready(pool)
            [container] = containers_of(docker_api, gateway_name)
            results: list[dict[str, object]] = []

            async def idempotent_call() -> None:
                arguments = {"seconds": 1}
                results.append(
                    await pool.request("tools/call", {"name": "slow", "arguments": arguments})
                )

            with anyio.fail_after(25):
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(idempotent_call)
                    await until(pool, lambda: pool.replicas[0].in_flight == 1, timeout=10)
                    await anyio.to_thread.run_sync(docker_api.kill, container["Id"])
            [result] = results
            assert text_of(result) == "slept 1"
            assert pool.replicas[0].restarts == 1

    anyio.run(scenario)


def test_a_named_network_is_joined(
    tmp_path: Path, test_image: str, gateway_name: str, docker_api: docker.APIClient
) -> None:
    network = f"{gateway_name}-net"
    docker_api.create_network(network, internal=True)
    try:
        loaded = load(
            tmp_path,
            f"""
            gateway: {{name: {gateway_name}}}
            servers:
              joined: {{image: "{test_image}", network: {network}}}
            """,
        )

        async def scenario() -> None:
            async with running(loaded) as supervisor:
                await ready(supervisor.pool("joined"))
                [container] = containers_of(docker_api, gateway_name)
                info = docker_api.inspect_container(container["Id"])
                assert info["HostConfig"]["NetworkMode"] == network
                assert list(info["NetworkSettings"]["Networks"]) == [network]

        anyio.run(scenario)
    finally:
        docker_api.remove_network(network)


def test_weighted_routing_follows_the_weights(
    tmp_path: Path, test_image: str, gateway_name: str
) -> None:
    loaded = load(
        tmp_path,
        f"""
        gateway: {{name: {gateway_name}, routing: {{strategy: weighted}}}}
        servers:
          heavy: {{image: "{test_image}", replicas: 2, weights: [3, 1]}}
        """,
    )

    async def scenario() -> None:
        async with running(loaded) as supervisor:
            pool = supervisor.pool("heavy")
            await ready(pool)
            served = Counter([await whoami(pool) for _ in range(20)])
            assert served == {"0": 15, "1": 5}

    anyio.run(scenario)


def test_a_missing_read_only_volume_source_fails_the_start_with_its_name(
    tmp_path: Path, test_image: str, gateway_name: str
) -> None:
    loaded = load(
        tmp_path,
        f"""
        gateway: {{name: {gateway_name}}}
        servers:
          keyless: {{image: "{test_image}", volumes: ["./no-such-key:/run/secrets/key:ro"],
                     restart: never}}
        """,
    )

    async def scenario() -> None:
        async with running(loaded) as supervisor:
            replica = supervisor.pool("keyless").replicas[0]
            with anyio.fail_after(30):
                while replica.state is not ReplicaState.FAILED:
                    await replica.next_change().wait()
            assert f"volume source {tmp_path}/no-such-key does not exist" in str(replica.last_error)

    anyio.run(scenario)
    assert not (tmp_path / "no-such-key").exists()
