"""The `e2b` backend's mapping onto the E2B SDK's documented interface, against a fake of the
SDK's AsyncSandbox that returns and raises the SDK's own result and exception types. The cloud
itself is not reachable here."""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
import e2b
import pytest
from cua_e2b.backends import Execution, SandboxError
from cua_e2b.backends.e2b import CloudBackend, CloudSandbox
from cua_e2b.server import create_server
from cua_e2b.sessions import Sessions
from e2b.sandbox_async.commands.command import Commands
from e2b.sandbox_async.filesystem.filesystem import Filesystem
from mcp import Client


@dataclass
class FakeCommands:
    outcome: e2b.CommandResult | BaseException
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def run(self, cmd: str, **kwargs: Any) -> e2b.CommandResult:
        self.calls.append((cmd, kwargs))
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


@dataclass
class FakeFiles:
    content: dict[str, bytes] = field(default_factory=dict)
    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    async def write(self, path: str, data: str | bytes, **kwargs: Any) -> e2b.WriteInfo:
        self.calls.append(("write", path, kwargs))
        self.content[path] = data.encode() if isinstance(data, str) else data
        return e2b.WriteInfo(name=path.rsplit("/", 1)[-1], type=e2b.FileType.FILE, path=path)

    async def read(self, path: str, **kwargs: Any) -> bytearray:
        self.calls.append(("read", path, kwargs))
        if path not in self.content:
            raise e2b.FileNotFoundException(f"path '{path}' does not exist")
        return bytearray(self.content[path])

    async def list(self, path: str, **kwargs: Any) -> list[e2b.EntryInfo]:
        self.calls.append(("list", path, kwargs))
        return [entry("b.txt", e2b.FileType.FILE, 3), entry("a", e2b.FileType.DIR, 4096)]


def entry(name: str, type: e2b.FileType, size: int) -> e2b.EntryInfo:
    return e2b.EntryInfo(
        name=name,
        type=type,
        path=f"/home/user/{name}",
        size=size,
        mode=0o644,
        permissions="rw-r--r--",
        owner="user",
        group="user",
        modified_time=datetime(2026, 1, 1, tzinfo=UTC),
    )


@dataclass
class FakeSandbox:
    commands: FakeCommands = field(default_factory=lambda: FakeCommands(result(0, "ok\n")))
    files: FakeFiles = field(default_factory=FakeFiles)
    killed: int = 0

    async def kill(self) -> bool:
        self.killed += 1
        return True


@dataclass
class FakeCreate:
    sandbox: FakeSandbox = field(default_factory=FakeSandbox)
    calls: list[dict[str, Any]] = field(default_factory=list)

    async def __call__(self, **kwargs: Any) -> FakeSandbox:
        self.calls.append(kwargs)
        return self.sandbox


def result(code: int, stdout: str = "", stderr: str = "", error: str | None = None) -> Any:
    return e2b.CommandResult(stderr=stderr, stdout=stdout, exit_code=code, error=error)


def accepted(function: Any) -> set[str]:
    """The keyword arguments `function` takes by name (the SDK's documented parameters)."""
    parameters = inspect.signature(function).parameters
    names = {p.name for p in parameters.values() if p.kind != p.VAR_KEYWORD}
    if any(p.kind == p.VAR_KEYWORD for p in parameters.values()):
        names |= set(e2b.ApiParams.__annotations__)
    return names


def run(coroutine: Any) -> Any:
    async def main() -> Any:
        return await coroutine

    return anyio.run(main)


def sandbox_with(outcome: e2b.CommandResult | BaseException) -> tuple[CloudSandbox, FakeSandbox]:
    fake = FakeSandbox(commands=FakeCommands(outcome))
    return CloudSandbox(fake), fake


def test_create_passes_the_key_template_lifetime_and_our_id_to_the_sdk() -> None:
    create = FakeCreate()
    backend = CloudBackend("e2b_key", "my-template", 1800, create=create)
    run(backend.create("sbx-1"))
    assert create.calls == [
        {
            "template": "my-template",
            "timeout": 1800,
            "api_key": "e2b_key",
            "metadata": {"cua-sandbox-id": "sbx-1"},
        }
    ]
    assert set(create.calls[0]) <= accepted(e2b.AsyncSandbox.create)


def test_a_command_maps_to_commands_run_and_its_result() -> None:
    sandbox, fake = sandbox_with(result(0, "hello\n", "warn\n"))
    execution = run(sandbox.run_command("echo hello", "/home/user/src", 12))
    assert execution == Execution("hello\n", "warn\n", 0, None)
    [(command, kwargs)] = fake.commands.calls
    assert command == "echo hello"
    assert kwargs["cwd"] == "/home/user/src"
    assert kwargs["timeout"] == 12
    assert set(kwargs) <= accepted(Commands.run)


def test_a_non_zero_exit_arrives_as_command_exit_exception_and_keeps_its_output() -> None:
    exited = e2b.CommandExitException(
        stderr="Traceback…\nValueError: bad\n", stdout="partial\n", exit_code=1, error="exit 1"
    )
    sandbox, _ = sandbox_with(exited)
    execution = run(sandbox.run_command("python3 x.py", None, 5))
    assert execution.exit_code == 1
    assert execution.stdout == "partial\n"
    assert execution.error == "exit 1"


def test_a_non_zero_exit_without_an_sdk_message_is_explained_from_stderr() -> None:
    sandbox, _ = sandbox_with(result(2, "", "ls: cannot access 'x'\n"))
    execution = run(sandbox.run_command("ls x", None, 5))
    assert execution.error == "exit status 2: ls: cannot access 'x'"


def test_a_command_timeout_is_reported_as_timed_out() -> None:
    sandbox, _ = sandbox_with(e2b.TimeoutException("context deadline exceeded"))
    execution = run(sandbox.run_command("sleep 100", None, 2))
    assert execution.timed_out is True
    assert execution.exit_code is None
    assert execution.error is not None
    assert execution.error.startswith("timed out after 2 s")


def test_run_code_writes_the_source_to_a_file_then_runs_python3_on_it() -> None:
    sandbox, fake = sandbox_with(result(0, "4\n"))
    execution = run(sandbox.run_code("print(2 + 2)", 30))
    assert execution.stdout == "4\n"
    [(kind, path, _)] = fake.files.calls
    assert kind == "write"
    assert fake.files.content[path] == b"print(2 + 2)"
    [(command, _)] = fake.commands.calls
    assert command == f"python3 {path}"


def test_files_map_onto_write_read_and_list() -> None:
    sandbox, fake = sandbox_with(result(0))
    assert run(sandbox.write_file("/home/user/in.txt", b"data")) == "/home/user/in.txt"
    assert run(sandbox.read_file("/home/user/in.txt", 100)) == b"data"
    assert fake.files.calls[1][2] == {"format": "bytes"}
    assert set(fake.files.calls[1][2]) <= accepted(Filesystem.read)
    entries = run(sandbox.list_files("/home/user"))
    assert [(e.name, e.type, e.size) for e in entries] == [("a", "dir", 4096), ("b.txt", "file", 3)]


def test_a_file_larger_than_the_read_limit_is_refused() -> None:
    sandbox, _ = sandbox_with(result(0))
    run(sandbox.write_file("big", b"x" * 11))
    with pytest.raises(SandboxError, match="larger than 10 bytes"):
        run(sandbox.read_file("big", 10))


def test_sdk_errors_become_sandbox_errors_with_e2b_s_message() -> None:
    sandbox, _ = sandbox_with(result(0))
    with pytest.raises(SandboxError, match="E2B: not found: path 'nope' does not exist"):
        run(sandbox.read_file("nope", 10))

    async def refuse(**kwargs: Any) -> FakeSandbox:
        raise e2b.AuthenticationException("invalid API key")

    backend = CloudBackend("bad", None, 60, create=refuse)
    with pytest.raises(SandboxError, match="E2B: invalid API key"):
        run(backend.create("sbx-2"))


def test_close_kills_the_sandbox() -> None:
    sandbox, fake = sandbox_with(result(0))
    run(sandbox.close())
    assert fake.killed == 1


def test_the_tools_drive_the_cloud_backend_and_close_its_sandboxes_at_exit() -> None:
    create = FakeCreate()
    server = create_server(Sessions(CloudBackend("key", None, 3600, create=create), 300, 4))

    async def scenario() -> None:
        async with Client(server, mode="legacy") as client:
            created = await client.call_tool("create_sandbox", {})
            sandbox_id = json.loads(created.content[0].text)["sandbox_id"]  # type: ignore[union-attr]
            ran = await client.call_tool(
                "run_command", {"sandbox_id": sandbox_id, "command": "echo ok"}
            )
            answer = json.loads(ran.content[0].text)  # type: ignore[union-attr]
            assert answer["exit_code"] == 0
            assert answer["stdout"] == "ok\n"
            unknown = await client.call_tool("run_command", {"sandbox_id": "x", "command": "ls"})
            assert unknown.is_error
            assert "no sandbox x; create one with create_sandbox" in str(unknown.content)
            assert create.sandbox.killed == 0

    anyio.run(scenario)
    assert create.sandbox.killed == 1
