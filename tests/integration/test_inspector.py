"""Interop: the gateway driven by a real client from another codebase, the MCP Inspector CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.integration.conftest import ROOT, TEST_SERVER, containers_of
from tests.integration.frontends import free_port, http_gateway

pytestmark = pytest.mark.integration
INSPECTOR = ROOT / ".cua" / "node" / "node_modules" / ".bin" / "mcp-inspector"
GATEWAY = Path(sys.executable).parent / "cua-gateway"


@pytest.fixture
def config(tmp_path: Path, test_image: str, gateway_name: str) -> Path:
    path = tmp_path / "gateway.yml"
    path.write_text(
        f"gateway: {{name: {gateway_name}, state_dir: {tmp_path}/state}}\n"
        "servers:\n"
        f'  box: {{image: "{test_image}"}}\n'
        f'  local: {{command: "{sys.executable}", args: ["{TEST_SERVER / "server.py"}"]}}\n'
    )
    return path


def inspect(*target: str, method: str, tool: str = "", **arguments: str) -> dict[str, object]:
    command = [str(INSPECTOR), "--cli", *target, "--method", method]
    if tool:
        command += ["--tool-name", tool]
    for name, value in arguments.items():
        command += ["--tool-arg", f"{name}={value}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr + result.stdout
    answer: dict[str, object] = json.loads(result.stdout)
    return answer


@pytest.fixture
def gateway_url(config: Path) -> Iterator[str]:
    with http_gateway(config, free_port()) as base:
        yield base


def test_inspector_over_streamable_http_lists_and_calls_tools(gateway_url: str) -> None:
    listed = inspect(f"{gateway_url}/mcp", "--transport", "http", method="tools/list")
    names = {t["name"] for t in listed["tools"]}  # type: ignore[attr-defined]
    assert {"box_echo", "local_echo", "box_whoami"} <= names
    called = inspect(
        f"{gateway_url}/mcp",
        "--transport",
        "http",
        method="tools/call",
        tool="box_add",
        a="2",
        b="40",
    )
    assert called["content"] == [{"type": "text", "text": "42"}]


def test_inspector_over_stdio_launches_the_gateway_and_calls_a_tool(
    config: Path, gateway_name: str, docker_api: docker.APIClient
) -> None:
    target = [str(GATEWAY), "run", "-t", "stdio", "-c", str(config)]
    called = inspect(*target, method="tools/call", tool="box_echo", text="over stdio")
    assert called["content"] == [{"type": "text", "text": "over stdio"}]
    assert containers_of(docker_api, gateway_name) == []  # the gateway cleaned up as it left
