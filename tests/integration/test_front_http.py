"""The HTTP front's own duties: who may connect, what it says when asked nonsense, what it
measures, and that one failed server leaves the others serving."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import ClientSession, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from tests.integration.conftest import TEST_SERVER
from tests.integration.frontends import Recorder, connect, free_port, http_gateway

pytestmark = pytest.mark.integration
TOKEN = "s3cret-gateway-token"
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"},
    },
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def write_config(folder: Path, extra: str = "") -> Path:
    config = folder / "gateway.yml"
    config.write_text(
        f"gateway: {{name: http{free_port()}, state_dir: {folder}/state}}\n"
        "servers:\n"
        f'  alpha: {{command: "{sys.executable}", args: ["{TEST_SERVER / "server.py"}"]}}\n'
        f'  beta: {{command: "{sys.executable}", args: ["{TEST_SERVER / "server.py"}"],'
        " restart: never}\n" + extra
    )
    return config


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("secured")
    config = write_config(folder, "auth: {bearer_tokens: ['${CUA_GATEWAY_TOKEN}']}\n")
    env = {"PATH": "/usr/bin:/bin", "CUA_GATEWAY_TOKEN": TOKEN}
    with http_gateway(config, free_port(), env) as base:
        yield base


def post(base: str, body: object, **headers: str) -> httpx2.Response:
    content = body if isinstance(body, str) else json.dumps(body)
    return httpx2.post(
        f"{base}/mcp", content=content, headers={**MCP_HEADERS, **headers}, timeout=10
    )


def test_requests_without_the_bearer_token_are_refused(secured: str) -> None:
    refused = post(secured, INIT)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert post(secured, INIT, Authorization="Bearer wrong").status_code == 401
    assert post(secured, INIT, Authorization=f"Bearer {TOKEN}").status_code == 200
    assert httpx2.get(f"{secured}/healthz").status_code == 200  # liveness needs no token
    assert httpx2.get(f"{secured}/readyz").status_code == 401


def test_a_client_with_the_token_is_served(secured: str) -> None:
    async def scenario() -> None:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with (
            create_mcp_http_client(headers=headers) as http,
            streamable_http_client(f"{secured}/mcp", http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            result = await session.call_tool("alpha_echo", {"text": "authorized"})
            assert result.content[0].text == "authorized"  # type: ignore[union-attr]

    anyio.run(scenario)


def test_foreign_host_and_origin_headers_are_refused_on_loopback(secured: str) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert post(secured, INIT, Host="evil.example", **auth).status_code == 421
    assert post(secured, INIT, Origin="http://evil.example", **auth).status_code == 403
    assert post(secured, INIT, Origin="http://localhost:5173", **auth).status_code == 200


def test_malformed_json_rpc_gets_a_parse_error_and_the_gateway_keeps_serving(secured: str) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    broken = post(secured, "{this is not json", **auth)
    assert broken.status_code == 400
    assert broken.json()["error"]["code"] == -32700
    assert post(secured, INIT, **auth).status_code == 200


def test_metrics_count_requests_and_report_servers_and_sessions(secured: str) -> None:
    test_a_client_with_the_token_is_served(secured)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    metrics = httpx2.get(f"{secured}/metrics", headers=auth).text
    assert (
        'cua_gateway_requests_total{method="tools/call",outcome="ok",server="alpha",tool="echo"}'
        in metrics
    )
    assert 'cua_gateway_server_up{server="alpha"} 1.0' in metrics
    assert 'cua_gateway_replicas{server="beta",state="healthy"} 1.0' in metrics
    assert 'cua_gateway_tool_call_seconds_count{server="alpha",tool="echo"}' in metrics
    assert "cua_gateway_active_sessions" in metrics


def test_one_failed_server_is_named_in_errors_while_the_other_serves(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with http_gateway(config, free_port()) as base:

        async def scenario() -> None:
            recorder = Recorder()
            async with connect("streamable-http", recorder, base=base) as session:
                with pytest.raises(MCPError) as lost:  # beta dies mid-call (restart: never)
                    await session.call_tool("beta_crash", {"code": 9})
                assert lost.value.code == -32011
                assert "beta#0: lost during tools/call" in lost.value.message
                assert "status 9" in lost.value.message
                with pytest.raises(MCPError) as gone:
                    await session.call_tool("beta_echo", {"text": "anyone?"})
                assert gone.value.code == -32010
                assert gone.value.message.startswith("beta")
                result = await session.call_tool("alpha_echo", {"text": "still here"})
                assert result.content[0].text == "still here"  # type: ignore[union-attr]

        anyio.run(scenario)


def test_listening_off_loopback_without_a_token_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "cua_gateway", "run", "-c", str(config), "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "refusing to listen on 0.0.0.0 without authentication" in result.stderr


def sse_events(lines: list[str]) -> list[dict[str, str]]:
    events, current = [], {}
    for line in lines:
        if not line:
            if current:
                events.append(current)
            current = {}
            continue
        field, _, value = line.partition(":")
        current[field] = current.get(field, "") + value.lstrip()
    return events


def read_events(
    stream: httpx2.Response, done: Callable[[list[dict[str, str]]], bool]
) -> list[dict[str, str]]:
    """SSE events from `stream`, until `done(events)` says enough."""
    lines: list[str] = []
    for line in stream.iter_lines():
        lines.append(line)
        events = sse_events(lines)
        if done(events):
            return events
    return sse_events([*lines, ""])


@pytest.mark.parametrize("lane", [False, True], ids=["sdk-path", "express-lane"])
def test_a_client_that_reconnects_with_last_event_id_loses_nothing(
    secured: str, lane: bool
) -> None:
    """Both ways a call is served: by the SDK's transport (a session's first requests), and by
    the express lane (a session the gateway has seen, here by its tools/list)."""
    auth = {"Authorization": f"Bearer {TOKEN}", "mcp-protocol-version": "2025-11-25"}
    with httpx2.Client(headers={**MCP_HEADERS, **auth}, timeout=30) as http:
        opened = http.post(f"{secured}/mcp", json=INIT)
        session = {"mcp-session-id": opened.headers["mcp-session-id"]}
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        http.post(f"{secured}/mcp", json=initialized, headers=session)
        if lane:
            listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
            assert "alpha_slow" in http.post(f"{secured}/mcp", json=listing, headers=session).text
        call = {
            "jsonrpc": "2.0",
            "id": 7,
            "method": "tools/call",
            "params": {
                "name": "alpha_slow",
                "arguments": {"seconds": 1},
                "_meta": {"progressToken": "p1"},
            },
        }

        def progressed(events: list[dict[str, str]]) -> bool:
            return any("progress" in e.get("data", "") and e.get("id") for e in events)

        with http.stream("POST", f"{secured}/mcp", json=call, headers=session) as stream:
            seen = read_events(stream, progressed)  # then the connection drops
        first = next(e for e in seen if "progress" in e.get("data", ""))

        def answered(events: list[dict[str, str]]) -> bool:
            return any('"id":7' in e.get("data", "").replace(" ", "") for e in events)

        resume = {**session, "Last-Event-ID": first["id"]}
        with http.stream("GET", f"{secured}/mcp", headers=resume) as stream:
            replayed = [
                json.loads(e["data"]) for e in read_events(stream, answered) if e.get("data")
            ]
    result = next(m for m in replayed if m.get("id") == 7)
    assert result["result"]["content"][0]["text"] == "slept 1"
    assert any(m.get("method") == "notifications/progress" for m in replayed)


def test_in_stdio_mode_metrics_are_served_on_the_metrics_port(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, f"monitoring: {{metrics_port: {port}}}\n")

    async def scenario() -> None:
        async with connect("stdio", Recorder(), config=config) as session:
            await session.call_tool("alpha_echo", {"text": "counted"})
            async with httpx2.AsyncClient() as http:
                metrics = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
                ready = (await http.get(f"http://127.0.0.1:{port}/readyz")).json()
        assert 'server="alpha",tool="echo"' in metrics, metrics
        assert "cua_gateway_active_sessions 1.0" in metrics
        assert ready["servers"]["alpha"]["ready"] is True

    anyio.run(scenario)
