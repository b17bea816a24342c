"""End-to-end tests of the shipped servers: each runs as a container started by the gateway,
configured by its own entry of the shipped gateway.yml."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from cua_gateway.config import LoadedConfig, parse_config
from tests.integration.conftest import (  # noqa: F401 (fixtures)
    build_context,
    docker_api,
    gateway_name,
    test_image,
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
