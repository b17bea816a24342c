"""The shipped ssh server (ssh-mcp) in a container started by the gateway, against a real sshd on
127.0.0.1 that lets a dedicated user in with a throwaway key mounted into the container."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from textwrap import dedent
from typing import Any

import anyio
import pytest

from cua_gateway.config import LoadedConfig
from cua_gateway.downstream.pool import ServerPool
from tests.e2e._ssh_sshd import CONTAINER_UID, SshHost, running_sshd
from tests.e2e.conftest import shipped_server
from tests.integration.conftest import ready, running, text_of

pytestmark = pytest.mark.e2e

COMMAND_TIMEOUT_MS = 1500  # ssh-mcp's --timeout in the timeout test
PROCESS_GONE_TIMEOUT = 10.0  # seconds for a timed-out command's process to disappear


@pytest.fixture
def sshd() -> Iterator[SshHost]:
    with running_sshd() as host:
        yield host


def ssh_entry(gateway: str, host: SshHost, **env: str) -> LoadedConfig:
    return shipped_server(
        "ssh",
        gateway,
        {
            "SSH_HOST": "127.0.0.1",
            "SSH_PORT": str(host.port),
            "SSH_USER": host.user,
            "SSH_KEY_PATH": str(host.client_key),
            **env,
        },
    )


@asynccontextmanager
async def ssh_pool(loaded: LoadedConfig) -> AsyncIterator[ServerPool]:
    async with running(loaded) as supervisor:
        pool = supervisor.pool("ssh")
        await ready(pool)
        yield pool


async def call(pool: ServerPool, tool: str, **arguments: Any) -> dict[str, Any]:
    return await pool.request("tools/call", {"name": tool, "arguments": arguments})


def test_ssh_runs_commands_on_the_host_and_returns_their_output(
    gateway_name: str, sshd: SshHost
) -> None:
    nonce = uuid.uuid4().hex
    note = sshd.work / "note.txt"

    async def scenario() -> None:
        async with ssh_pool(ssh_entry(gateway_name, sshd)) as pool:
            tools = {t["name"] for t in (await pool.request("tools/list"))["tools"]}
            assert {"run-command", "read-command"} <= tools

            ran = await call(pool, "run-command", command=f"id -un && echo {nonce} > {note}")
            assert not ran.get("isError"), text_of(ran)
            assert text_of(ran).strip() == sshd.user

            read = await call(pool, "read-command", command=f"cat {note}")
            assert not read.get("isError"), text_of(read)
            assert text_of(read).strip() == nonce

            failed = await call(pool, "run-command", command="echo oops >&2; exit 3")
            assert failed["isError"] is True
            assert "exit 3" in text_of(failed)

    anyio.run(scenario)
    assert note.read_text().strip() == nonce  # it ran on the host, as the ssh user
    assert any(f"Accepted publickey for {sshd.user}" in line for line in sshd.log)


def test_ssh_refuses_what_its_policy_forbids_and_runs_none_of_it(
    gateway_name: str, sshd: SshHost
) -> None:
    marker = sshd.work / "must-not-exist"

    async def scenario() -> None:
        async with ssh_pool(ssh_entry(gateway_name, sshd)) as pool:
            # A built-in never-allowed rule (eval), whatever the role or tier.
            forbidden = await call(pool, "run-command", command=f"touch {marker}; eval true")
            assert forbidden["isError"] is True
            assert "POLICY_DENIED" in text_of(forbidden)
            assert "never-allowed" in text_of(forbidden)

            # sudo is "privileged": the default tier (--group=prod) does not grant it.
            elevated = await call(pool, "run-command", command=f"sudo -n touch {marker}")
            assert elevated["isError"] is True
            assert 'cannot run "privileged" commands' in text_of(elevated)

            # read-command runs only read-only commands.
            writes = await call(pool, "read-command", command=f"touch {marker}")
            assert writes["isError"] is True
            assert "only accepts read-only commands" in text_of(writes)

    anyio.run(scenario)
    assert not marker.exists()


def test_ssh_refuses_a_command_on_the_operators_own_denylist(
    gateway_name: str, sshd: SshHost
) -> None:
    """ssh-mcp's CLI takes no denylist: an operator's policy comes in a mounted config file."""
    folder = Path(tempfile.mkdtemp(prefix="cua-e2e-ssh-config-"))
    try:
        config = folder / "config.toml"
        config.write_text(operator_config(sshd, denylist=r"^uname\b"))
        for path, mode in ((folder, 0o700), (config, 0o600)):  # ssh-mcp insists on both
            os.chown(path, CONTAINER_UID, CONTAINER_UID)
            path.chmod(mode)
        loaded = shipped_server(
            "ssh",
            gateway_name,
            {"SSH_USER": sshd.user, "SSH_KEY_PATH": str(sshd.client_key)},
            f"""
            args: [--config=/run/ssh-mcp/config.toml]
            volumes: ["{sshd.client_key}:/run/secrets/ssh_key:ro", "{folder}:/run/ssh-mcp:ro"]
            """,
        )

        async def scenario() -> None:
            async with ssh_pool(loaded) as pool:
                denied = await call(pool, "run-command", command="uname -a")
                assert denied["isError"] is True
                assert "[policy].denylist" in text_of(denied)
                allowed = await call(pool, "run-command", command="id -un")
                assert text_of(allowed).strip() == sshd.user

        anyio.run(scenario)
    finally:
        shutil.rmtree(folder)


def operator_config(host: SshHost, denylist: str) -> str:
    return dedent(
        f"""
        [defaults]
        defaultProfile = "box"

        [[profiles]]
        name = "box"
        host = "127.0.0.1"
        port = {host.port}
        user = "{host.user}"
        auth = "key"
        keyRef = "/run/secrets/ssh_key"
        role = "operator"
        group = "dev"

        [policy]
        denylist = [{json.dumps(denylist)}]
        """
    )


def test_ssh_times_out_a_long_command_and_stops_it_on_the_host(
    gateway_name: str, sshd: SshHost
) -> None:
    started = sshd.work / "started"
    # A duration no other process has, so the host's process table tells whether it still runs.
    sleep = f"sleep 59.{uuid.uuid4().int % 10**6:06d}"
    loaded = ssh_entry(gateway_name, sshd, SSH_COMMAND_TIMEOUT_MS=str(COMMAND_TIMEOUT_MS))

    async def scenario() -> None:
        async with ssh_pool(loaded) as pool:
            slow = await call(pool, "run-command", command=f"touch {started} && {sleep}")
            assert slow["isError"] is True
            assert f"timed out after {COMMAND_TIMEOUT_MS}ms" in text_of(slow)
            assert started.exists()  # it did run, then ran out of time

            with anyio.fail_after(PROCESS_GONE_TIMEOUT):
                for pid in processes_of(sshd.user, sleep):
                    await exited(pid)

            quick = await call(pool, "run-command", command="echo still here")
            assert text_of(quick).strip() == "still here"

    anyio.run(scenario)


def processes_of(user: str, command_line: str) -> list[int]:
    found = subprocess.run(
        ["pgrep", "-u", user, "-f", command_line], capture_output=True, text=True, check=False
    )
    return [int(pid) for pid in found.stdout.split()]


async def exited(pid: int) -> None:
    """Wait, without polling, until process `pid` has exited (its pidfd turns readable)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        await anyio.wait_readable(fd)
    finally:
        os.close(fd)


def test_ssh_is_disabled_with_the_reason_without_its_key_or_user(gateway_name: str) -> None:
    without_key = shipped_server("ssh", gateway_name, {"SSH_USER": "deploy"})
    assert "SSH_KEY_PATH" in without_key.disabled["ssh"]
    without_user = shipped_server("ssh", gateway_name, {"SSH_KEY_PATH": "/tmp/key"})
    assert "SSH_USER" in without_user.disabled["ssh"]
