"""Clients of the gateway over each front transport, with every client capability wired to a
recorder, so tests can see what the servers sent through the gateway."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import (
    CreateMessageResult,
    ElicitResult,
    ListRootsResult,
    Root,
    TextContent,
)

TRANSPORTS = ["streamable-http", "sse", "stdio"]
START_TIMEOUT = 90.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Recorder:
    """What the servers asked of and told this client."""

    notifications: list[dict[str, Any]] = field(default_factory=list)
    sampled: list[str] = field(default_factory=list)
    changed: anyio.Event = field(default_factory=anyio.Event)

    async def sampling(self, _: Any, params: Any) -> CreateMessageResult:
        prompt = params.messages[0].content.text
        self.sampled.append(prompt)
        return CreateMessageResult(
            role="assistant",
            content=TextContent(type="text", text=f"model says: {prompt}"),
            model="stand-in",
        )

    async def elicitation(self, _: Any, params: Any) -> ElicitResult:
        return ElicitResult(action="accept", content={"name": "alice"})

    async def roots(self, _: Any) -> ListRootsResult:
        return ListRootsResult(roots=[Root(uri="file:///work/project", name="project")])

    async def message(self, message: Any) -> None:
        if hasattr(message, "model_dump"):
            self.notifications.append(
                message.model_dump(by_alias=True, mode="json", exclude_none=True)
            )
            self.changed.set()
            self.changed = anyio.Event()

    async def wait_for(self, method: str, timeout: float = 15) -> dict[str, Any]:
        with anyio.fail_after(timeout):
            while True:
                changed = self.changed
                for n in self.notifications:
                    if n.get("method") == method:
                        return n
                await changed.wait()

    def session(self, read: Any, write: Any) -> ClientSession:
        import warnings  # noqa: PLC0415

        from mcp.shared.exceptions import MCPDeprecationWarning  # noqa: PLC0415

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            return ClientSession(
                read,
                write,
                sampling_callback=self.sampling,
                elicitation_callback=self.elicitation,
                list_roots_callback=self.roots,
                message_handler=self.message,
            )


@contextmanager
def http_gateway(config: Path, port: int, env: dict[str, str] | None = None) -> Iterator[str]:
    """`cua-gateway run` over HTTP; yields its base URL once every server is ready."""
    command = [sys.executable, "-m", "cua_gateway", "run", "-c", str(config), "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        anyio.run(_wait_ready, base, env or {})
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        finally:
            process.kill()
            assert process.stderr is not None
            process.stderr.close()


async def _wait_ready(base: str, env: dict[str, str]) -> None:
    token = env.get("CUA_GATEWAY_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with anyio.fail_after(START_TIMEOUT):
        async with httpx2.AsyncClient(headers=headers) as http:
            while True:
                try:
                    status = (await http.get(f"{base}/readyz")).json()
                    servers = status.get("servers", {}).values()
                    if servers and all(s.get("state") == "ready" for s in servers):
                        return
                except (httpx2.HTTPError, json.JSONDecodeError):
                    pass
                await anyio.sleep(0.1)


@asynccontextmanager
async def connect(
    transport: str, recorder: Recorder, *, base: str = "", config: Path | None = None
) -> AsyncIterator[ClientSession]:
    """An initialized client session with the gateway over `transport`."""
    if transport == "stdio":
        assert config is not None
        parameters = StdioServerParameters(
            command=sys.executable,
            args=["-m", "cua_gateway", "run", "--transport", "stdio", "-c", str(config)],
        )
        # the gateway's logs go nowhere; opening /dev/null does not block
        with Path(os.devnull).open("w") as errlog:  # noqa: ASYNC230
            async with (
                stdio_client(parameters, errlog=errlog) as (read, write),
                recorder.session(read, write) as session,
            ):
                with anyio.fail_after(START_TIMEOUT):
                    await session.initialize()
                yield session
        return
    if transport == "sse":
        streams = sse_client(f"{base}/sse")
    else:
        streams = streamable_http_client(f"{base}/mcp")
    async with streams as (read, write), recorder.session(read, write) as session:
        with anyio.fail_after(START_TIMEOUT):
            await session.initialize()
        yield session
