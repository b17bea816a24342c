"""Real Docker, real processes: fixtures that build the test server's image and run gateways.

Every container a test starts carries the test's own gateway name; teardown removes whatever is
left of it, even when the test failed, and the tests themselves assert nothing was left.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from textwrap import dedent

import anyio
import docker
import pytest

from cua_gateway.config import LoadedConfig, parse_config
from cua_gateway.downstream.pool import ServerPool, any_change
from cua_gateway.downstream.supervisor import Supervisor
from cua_gateway.runtime.docker import LABEL_GATEWAY, owner_id
from cua_gateway.runtime.images import ensure_image
from cua_gateway.runtime.registry import Runtimes

ROOT = Path(__file__).resolve().parents[2]
TEST_SERVER = ROOT / "tests" / "servers" / "testserver"
WHEELS = ROOT / ".cua" / "wheels"
BASE_IMAGE = "cua-gateway/base:bookworm"
TEST_IMAGE = "cua-gateway/testserver:test"
READY_TIMEOUT = 60.0


@pytest.fixture(scope="session")
def docker_api() -> Iterator[docker.APIClient]:
    api = docker.APIClient(version="auto", timeout=120)
    api.ping()
    yield api
    api.close()


@pytest.fixture(scope="session")
def build_context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test server's build context: its Dockerfile and code, plus the offline wheels."""
    context = tmp_path_factory.mktemp("testserver")
    shutil.copy(TEST_SERVER / "Dockerfile", context)
    shutil.copy(TEST_SERVER / "server.py", context)
    if WHEELS.is_dir():
        shutil.copytree(WHEELS, context / "wheels", ignore=shutil.ignore_patterns(".*"))
    return context


@pytest.fixture(scope="session")
def test_image(docker_api: docker.APIClient, build_context: Path) -> str:
    """The test server image, built by the gateway's own image builder when missing."""
    config = parse_config(
        dedent(
            f"""
            servers:
              testserver:
                image: {TEST_IMAGE}
                build: {{context: {build_context}, args: {{BASE_IMAGE: {BASE_IMAGE}}}}}
            """
        ),
        build_context / "gateway.yml",
        {},
    ).config.servers["testserver"]
    return anyio.run(ensure_image, docker_api, "testserver", config)


@pytest.fixture
def gateway_name(docker_api: docker.APIClient) -> Iterator[str]:
    """A gateway name of the test's own; its leftover containers are removed afterwards."""
    name = f"t{uuid.uuid4().hex[:10]}"
    yield name
    for container in docker_api.containers(all=True, filters={"label": f"{LABEL_GATEWAY}={name}"}):
        docker_api.remove_container(container["Id"], force=True)


def containers_of(api: docker.APIClient, gateway: str) -> list[dict[str, object]]:
    found: list[dict[str, object]] = api.containers(
        all=True, filters={"label": f"{LABEL_GATEWAY}={gateway}"}
    )
    return found


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> LoadedConfig:
    path = tmp_path / "gateway.yml"
    path.write_text(dedent(text))
    return parse_config(path.read_text(), path, env or {})


@asynccontextmanager
async def running(loaded: LoadedConfig) -> AsyncIterator[Supervisor]:
    name = loaded.config.gateway.name
    runtimes = Runtimes(name, uuid.uuid4().hex, owner_id(), {"PATH": "/usr/bin:/bin"})
    async with Supervisor(loaded, runtimes).run() as supervisor:
        yield supervisor


async def ready(pool: ServerPool, replicas: int | None = None) -> None:
    """Wait until `replicas` (default: all) replicas of the pool are healthy."""
    wanted = len(pool.replicas) if replicas is None else replicas
    await until(pool, lambda: sum(r.routable for r in pool.replicas) >= wanted)


async def until(
    pool: ServerPool, condition: Callable[[], bool], timeout: float = READY_TIMEOUT
) -> None:
    """Wait, without polling, until `condition` holds after some change of a replica's state."""
    with anyio.fail_after(timeout):
        while True:
            changes = [r.next_change() for r in pool.replicas]
            if condition():
                return
            await any_change(changes)


def text_of(result: dict[str, object]) -> str:
    content = result["content"]
    assert isinstance(content, list)
    return "".join(str(part["text"]) for part in content if part.get("type") == "text")
