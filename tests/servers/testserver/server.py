"""cua-test: the MCP server the gateway's integration tests run as a downstream.

    python server.py                                              # stdio (default)
    python server.py http --host 127.0.0.1 --port 8765 [--path /mcp]   # streamable HTTP

Env: CUA_TEST_FAIL_START=<msg> makes the process print <msg> to stderr and exit 3 at once;
CUA_REPLICA / CUA_SERVER are echoed back by `whoami`.
"""

from __future__ import annotations

import argparse
import base64
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import anyio  # a dependency of mcp
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import (
    AudioContent,
    Completion,
    EmbeddedResource,
    EmptyResult,
    ImageContent,
    SamplingMessage,
    SubscribeRequestParams,
    TextContent,
    TextResourceContents,
    ToolAnnotations,
    UnsubscribeRequestParams,
)
from pydantic import BaseModel

FAIL_START_EXIT_CODE = 3
PROGRESS_INTERVAL = 0.1  # seconds between progress notifications in `slow`

READ_ONLY = ToolAnnotations(read_only_hint=True)
IDEMPOTENT = ToolAnnotations(idempotent_hint=True)

# WARNING: keeps uvicorn's per-request access lines (printed to stdout) out of test output.
mcp = MCPServer("cua-test", version="1.0.0", log_level="WARNING")
_counter = 0


@mcp.tool(annotations=READ_ONLY)
def echo(text: str) -> str:
    """Return `text` unchanged."""
    return text


@mcp.tool(annotations=IDEMPOTENT)
async def slow(seconds: float, ctx: Context[Any, Any]) -> str:
    """Sleep `seconds` (cancellable), reporting progress every 0.1 s."""
    start = anyio.current_time()
    await ctx.report_progress(0, seconds)
    while (elapsed := anyio.current_time() - start) < seconds:
        await anyio.sleep(min(PROGRESS_INTERVAL, seconds - elapsed))
        await ctx.report_progress(min(anyio.current_time() - start, seconds), seconds)
    return f"slept {seconds:g}"


@mcp.tool(annotations=READ_ONLY)
def whoami() -> dict[str, Any]:
    """Identify this process: replica, server name, hostname, pid, uid."""
    return {
        "replica": os.environ.get("CUA_REPLICA"),
        "server": os.environ.get("CUA_SERVER"),
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "uid": os.getuid(),
    }


@mcp.tool()
def getenv(name: str) -> str | None:
    """Return the environment variable `name`, or null when unset."""
    return os.environ.get(name)


@mcp.tool()
def try_write(path: str) -> str:
    """Create or overwrite a small file at `path`; return "ok" or the OSError text."""
    try:
        Path(path).write_text("cua-test\n", encoding="utf-8")
    except OSError as e:
        return str(e)
    return "ok"


@mcp.tool()
def crash(code: int = 1) -> str:
    """Terminate the process at once with exit status `code` (no reply is sent)."""
    os._exit(code)


@mcp.tool(annotations=READ_ONLY)
def add(a: int, b: int) -> int:
    """Return a + b."""
    return a + b


@mcp.tool()
def counter() -> int:
    """Increment a per-process counter and return its new value."""
    global _counter  # noqa: PLW0603 - per-process state is the point of this tool
    _counter += 1
    return _counter


@mcp.tool()
async def work(seconds: float) -> int:
    """Take `seconds`, then increment the counter: a slow call that must never be repeated."""
    await anyio.sleep(seconds)
    return counter()


# --- every other protocol feature the gateway forwards ------------------------------------

PIXEL_PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360f8cf000000030101009a3a6f6b0000000049454e44ae426082"
    )
).decode()
_subscribed: set[str] = set()
_cancelled = 0


@mcp.tool()
async def hang() -> str:
    """Wait until cancelled; `cancellations` counts how often that happened."""
    global _cancelled  # noqa: PLW0603 - per-process state is the point of this tool
    try:
        await anyio.sleep_forever()
    except anyio.get_cancelled_exc_class():
        _cancelled += 1
        raise
    return "unreachable"


@mcp.tool(annotations=READ_ONLY)
def cancellations() -> int:
    """How many `hang` calls were cancelled."""
    return _cancelled


@mcp.tool(annotations=READ_ONLY)
def media() -> list[Any]:
    """An image, an audio clip and an embedded resource, in one result."""
    return [
        ImageContent(type="image", data=PIXEL_PNG, mime_type="image/png"),
        AudioContent(
            type="audio", data=base64.b64encode(b"RIFF0000WAVE").decode(), mime_type="audio/wav"
        ),
        EmbeddedResource(
            type="resource",
            resource=TextResourceContents(
                uri="test://static/greeting", text="hello", mime_type="text/plain"
            ),
        ),
    ]


@mcp.tool()
async def log(level: str, message: str, ctx: Context[Any, Any]) -> str:
    """Send `message` as a log notification at `level`."""
    await ctx.log(level, message)  # type: ignore[arg-type]
    return "logged"


@mcp.tool()
async def ask_llm(prompt: str, ctx: Context[Any, Any]) -> str:
    """Ask the client's model (sampling) and return its answer."""
    result = await ctx.session.create_message(
        messages=[SamplingMessage(role="user", content=TextContent(type="text", text=prompt))],
        max_tokens=50,
        related_request_id=ctx.request_id,
    )
    content = result.content
    return content.text if isinstance(content, TextContent) else str(content)


class Answer(BaseModel):
    name: str


@mcp.tool()
async def ask_user(question: str, ctx: Context[Any, Any]) -> str:
    """Ask the person (elicitation, form mode) for a name."""
    result = await ctx.elicit(question, Answer)
    return f"{result.action}:{result.data.name if result.data else ''}"


@mcp.tool()
async def list_roots(ctx: Context[Any, Any]) -> list[str]:
    """The client's roots."""
    roots = await ctx.session.list_roots()
    return [str(r.uri) for r in roots.roots]


_grown = 0


@mcp.tool()
async def grow(ctx: Context[Any, Any]) -> str:
    """Add a new tool `late_N` at runtime, announce the change, and return its name."""
    global _grown  # noqa: PLW0603 - per-process state is the point of this tool
    _grown += 1
    name = f"late_{_grown}"

    def late() -> str:
        """A tool that did not exist at start-up."""
        return "late but here"

    mcp.add_tool(late, name=name)
    await ctx.session.send_tool_list_changed()
    return name


@mcp.tool()
async def touch(uri: str, ctx: Context[Any, Any]) -> str:
    """Announce that resource `uri` changed, if someone subscribed to it."""
    if uri in _subscribed:
        await ctx.session.send_resource_updated(uri)
        return "notified"
    return "nobody subscribed"


@mcp.resource("test://static/greeting", mime_type="text/plain")
def greeting() -> str:
    """A fixed text resource."""
    return "hello"


@mcp.resource("test://item/{item}")
def item(item: str) -> str:
    """A templated resource."""
    return f"item {item}"


@mcp.prompt()
def greet(name: str) -> str:
    """A prompt with an argument that completes."""
    return f"Say hello to {name}."


@mcp.prompt()
async def briefed(topic: str, ctx: Context[Any, Any]) -> str:
    """A prompt that asks the client's model (sampling) before it answers."""
    result = await ctx.session.create_message(
        messages=[SamplingMessage(role="user", content=TextContent(type="text", text=topic))],
        max_tokens=50,
        related_request_id=ctx.request_id,
    )
    content = result.content
    return f"Brief: {content.text if isinstance(content, TextContent) else content}"


@mcp.completion()
async def complete(ref: Any, argument: Any, context: Any) -> Completion | None:
    names = ["alice", "albert", "bob"]
    return Completion(values=[n for n in names if n.startswith(argument.value)])


async def _subscribe(ctx: Any, params: SubscribeRequestParams) -> EmptyResult:
    _subscribed.add(str(params.uri))
    return EmptyResult()


async def _unsubscribe(ctx: Any, params: UnsubscribeRequestParams) -> EmptyResult:
    _subscribed.discard(str(params.uri))
    return EmptyResult()


mcp._lowlevel_server.add_request_handler("resources/subscribe", SubscribeRequestParams, _subscribe)
mcp._lowlevel_server.add_request_handler(
    "resources/unsubscribe", UnsubscribeRequestParams, _unsubscribe
)


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("transport", nargs="?", choices=("stdio", "http"), default="stdio")
    parser.add_argument("--host", default="127.0.0.1")
    # the gateway tells a container replica its port in MCP_PORT
    parser.add_argument("--port", type=int, default=int(os.environ.get("MCP_PORT", "8000")))
    parser.add_argument("--path", default="/mcp")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    if fail := os.environ.get("CUA_TEST_FAIL_START"):
        print(fail, file=sys.stderr, flush=True)
        sys.exit(FAIL_START_EXIT_CODE)
    args = _parse_args(argv)
    # As PID 1 in a container, SIGTERM's default action is ignored, so `docker stop` would wait
    # 10 s for SIGKILL. Exit at once instead (uvicorn installs its own handler in http mode).
    signal.signal(signal.SIGTERM, lambda signum, _frame: os._exit(128 + signum))
    if args.transport == "http":
        mcp.run("streamable-http", host=args.host, port=args.port, streamable_http_path=args.path)
    else:
        mcp.run()


if __name__ == "__main__":
    main()
