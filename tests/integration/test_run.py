"""`cua-gateway run` as a real process: it serves its health endpoints and stops cleanly."""

import json
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import anyio
import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


async def _wait_until_listening(port: int) -> None:
    with anyio.fail_after(20):
        while True:
            try:
                stream = await anyio.connect_tcp("127.0.0.1", port)
            except OSError:
                await anyio.sleep(0.05)
            else:
                await stream.aclose()
                return


def test_run_serves_health_and_readiness_then_stops_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    config = tmp_path / "gateway.yml"
    config.write_text(
        "servers:\n"
        "  box: {image: 'debian:12'}\n"
        "  gh: {image: gh, secrets: [GITHUB_PERSONAL_ACCESS_TOKEN]}\n"
    )
    env = {"PATH": "/usr/bin:/bin"}
    process = subprocess.Popen(
        [sys.executable, "-m", "cua_gateway", "run", "-c", str(config), "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        anyio.run(_wait_until_listening, port)
        assert _get(f"http://127.0.0.1:{port}/healthz") == (200, {"status": "ok"})
        status, body = _get(f"http://127.0.0.1:{port}/readyz")
        assert status == 503  # an enabled server is not ready yet
        servers = body["servers"]
        assert isinstance(servers, dict)
        assert servers["gh"]["state"] == "disabled"
        assert "GITHUB_PERSONAL_ACCESS_TOKEN" in servers["gh"]["error"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        process.kill()
        process.wait()
        assert process.stdout is not None
        assert process.stderr is not None
        stdout, stderr = process.stdout.read(), process.stderr.read()
        process.stdout.close()
        process.stderr.close()
    assert stdout == b""  # logs go to stderr only
    records = [json.loads(line) for line in stderr.decode().splitlines()]
    assert any("server gh is disabled" in r["message"] for r in records)


def test_invalid_configuration_exits_78_with_the_location(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yml"
    config.write_text("gateway:\n  prot: 8080\n")
    result = subprocess.run(
        [sys.executable, "-m", "cua_gateway", "check", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 78
    assert f"{config}:2:3: gateway.prot: unknown key 'prot'; did you mean 'port'?" in result.stderr
