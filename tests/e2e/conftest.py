"""End-to-end tests of the shipped servers: each runs as a container started by the gateway,
configured by its own entry of the shipped gateway.yml."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from cua_gateway.config import LoadedConfig, parse_config
from cua_gateway.downstream.pool import ServerPool
from tests.integration.conftest import (  # noqa: F401 (fixtures)
    build_context,
    docker_api,
    gateway_name,
    ready,
    running,
    test_image,
    text_of,
)

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "gateway.yml"


def shipped_server(
    name: str, gateway: str, env: Mapping[str, str], overrides: str = ""
) -> LoadedConfig:
    """The shipped gateway.yml with only server `name`, under the test's own gateway name.

    `env` plays the gateway's environment (secrets, ${VAR}s). `overrides` is YAML text merged
    into the server's entry (e.g. a short health-check interval); keep it small: the point is to
    test the shipped entry.
    """
    from ruamel.yaml import YAML  # noqa: PLC0415

    yaml = YAML(typ="rt")
    document = yaml.load(SHIPPED.read_text())
    document["gateway"]["name"] = gateway
    document["gateway"]["state_dir"] = str(ROOT / ".cua" / "e2e-state")
    document["servers"] = {name: document["servers"][name]}
    if overrides:
        document["servers"][name].update(yaml.load(overrides))
    path = ROOT / f".cua/e2e-{gateway}.yml"
    path.parent.mkdir(exist_ok=True)
    with path.open("w") as f:
        yaml.dump(document, f)
    loaded = parse_config(path.read_text(), SHIPPED, env)  # relative paths as in the shipped file
    path.unlink()
    return loaded


@asynccontextmanager
async def e2b_server(gateway: str) -> AsyncIterator[ServerPool]:
    """The shipped e2b entry running under the test's gateway name, ready."""
    async with running(shipped_server("e2b", gateway, {})) as supervisor:
        pool = supervisor.pool("e2b")
        await ready(pool)
        yield pool


async def call(pool: ServerPool, tool: str, **arguments: Any) -> Any:
    """A tool's JSON answer; the call must succeed."""
    result = await pool.request("tools/call", {"name": tool, "arguments": arguments})
    assert not result.get("isError"), text_of(result)
    return json.loads(text_of(result))


async def fails(pool: ServerPool, tool: str, **arguments: Any) -> str:
    """A tool's error text; the call must fail as a tool error."""
    result = await pool.request("tools/call", {"name": tool, "arguments": arguments})
    assert result.get("isError") is True, text_of(result)
    return text_of(result)
