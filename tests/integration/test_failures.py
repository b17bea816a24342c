"""Broken servers are reported with their error; the others keep serving."""

from __future__ import annotations

from pathlib import Path

import anyio
import docker
import pytest

from cua_gateway.downstream.replica import ReplicaState
from cua_gateway.errors import Unavailable
from tests.integration.conftest import containers_of, load, ready, running, text_of, until

pytestmark = pytest.mark.integration


def test_an_image_that_fails_to_build_is_reported_and_the_others_serve(
    tmp_path: Path, test_image: str, gateway_name: str, docker_api: docker.APIClient
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "Dockerfile").write_text(
        "FROM cua-gateway/base:bookworm\nRUN echo 'compiling...' && exit 42\n"
    )
    loaded = load(
        tmp_path,
        f"""
        gateway: {{name: {gateway_name}}}
        servers:
          broken: {{build: ./broken, image: "cua-gateway-test/broken:{gateway_name}"}}
          good: {{image: "{test_image}"}}
        """,
    )

    async def scenario() -> None:
        async with running(loaded) as supervisor:
            good, bad = supervisor.pool("good"), supervisor.pool("broken")
            await ready(good)
            with anyio.fail_after(60):
                with pytest.raises(Unavailable, match="build failed") as raised:
                    await bad.request("tools/list")
            assert "returned a non-zero code: 42" in str(raised.value)
            status = supervisor.status()
            assert status["broken"]["state"] == "failed"
            assert "build failed" in status["broken"]["error"]
            assert status["good"]["ready"] is True
            result = await good.request("tools/call", {"name": "echo", "arguments": {"text": "ok"}})
            assert text_of(result) == "ok"

    anyio.run(scenario)
    assert containers_of(docker_api, gateway_name) == []


def test_a_container_that_exits_at_once_fails_with_its_stderr_and_the_circuit_opens(
    tmp_path: Path, test_image: str, gateway_name: str, docker_api: docker.APIClient
) -> None:
    loaded = load(
        tmp_path,
        f"""
        gateway: {{name: {gateway_name}}}
        servers:
          doomed:
            image: "{test_image}"
            environment: {{CUA_TEST_FAIL_START: "cannot open /etc/doomed.conf"}}
            restart: {{policy: on-failure, backoff_initial: 50ms, circuit_failures: 2,
                       circuit_reset: 1h}}
          fine: {{image: "{test_image}"}}
        """,
    )

    async def scenario() -> None:
        async with running(loaded) as supervisor:
            doomed, fine = supervisor.pool("doomed"), supervisor.pool("fine")
            replica = doomed.replicas[0]
            await until(doomed, lambda: replica.state is ReplicaState.FAILED)
            assert replica.restarts == 2  # two failed starts, then the circuit stops trying
            assert replica.last_error is not None
            assert "status 3" in replica.last_error
            assert "cannot open /etc/doomed.conf" in replica.last_error
            assert "circuit open" in replica.last_error
            with pytest.raises(Unavailable, match=r"cannot open /etc/doomed\.conf"):
                await doomed.request("tools/list")
            await ready(fine)
            assert (await fine.request("ping")) == {}

    anyio.run(scenario)
    assert containers_of(docker_api, gateway_name) == []
