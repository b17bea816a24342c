"""The stdio front: one client on the process's stdin and stdout (what Claude Desktop launches),
read and written without threads, with the express lane (`lane.py`) in front of the SDK's server.

The SDK's own stdio transport reads each line in a worker thread and writes each message with two
more thread round trips (write, flush); here stdin and stdout are non-blocking pipes waited on by
the event loop. A `tools/call` line of a client the gateway has seen (after its first request
through the SDK, e.g. `tools/list`) is served by the lane; the client's answers to the lane's
requests and its cancellations of lane calls are taken by the lane; every other line is parsed
as the SDK's transport parses it and handed to the SDK's server. While serving, fd 0 reads the
null device and fd 1 writes to stderr, so a stray print of a library cannot corrupt the wire
(as the SDK's transport does too). When stdin or stdout is not a pipe, socket or terminal, the
SDK's transport serves instead.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import anyio
from mcp.server.connection import Connection
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage
from mcp.types import jsonrpc_message_adapter

from cua_gateway.front.lane import Lane, encode, is_call, parse
from cua_gateway.front.mcp_server import GatewayServer

logger = logging.getLogger(__name__)

READ_SIZE = 65536  # bytes read from stdin at a time
MAX_LINE = 64 * 1024 * 1024  # bytes: a longer line without a newline is a broken client
DRAIN_TIMEOUT = 5.0  # seconds for answers in flight once stdin has ended
STDIO_SESSION = "stdio"  # the lane's key for the one client


async def serve_stdio_client(server: GatewayServer, lane: Lane) -> None:
    """Serve the client on stdin/stdout until stdin ends."""
    with _claimed() as fds:
        if fds is None:
            async with stdio_server() as (read, write):
                await server.run(read, write, server.create_initialization_options())
            return
        stdin, stdout = fds
        out = _Lines(stdout)
        await _serve(server, lane, stdin, out)


async def _serve(server: GatewayServer, lane: Lane, stdin: int, out: _Lines) -> None:
    to_server, server_reads = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    server_writes, from_server = anyio.create_memory_object_stream[SessionMessage](0)

    async def run_server() -> None:
        async with server_writes:
            await server.run(server_reads, server_writes, server.create_initialization_options())

    async def write_answers() -> None:
        async with from_server:
            async for message in from_server:
                data = message.message.model_dump_json(by_alias=True, exclude_unset=True)
                await out.write(data.encode() + b"\n")

    async def call(message: Mapping[str, Any], connection: Connection) -> None:
        answer = await lane.call(STDIO_SESSION, connection, message, out)
        if answer is None:
            return
        try:
            await out.send(answer)
        except OSError as e:  # the client is gone; stdin's end follows
            logger.debug("stdout: %s", e)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(write_answers)
        tasks.start_soon(run_server)
        async with to_server:
            async for line in _read_lines(stdin):
                parsed = parse(line)
                connection = lane.hub.only_connection()
                if is_call(parsed) and connection is not None:
                    tasks.start_soon(call, parsed, connection)
                    continue
                if isinstance(parsed, dict) and lane.take(STDIO_SESSION, parsed):
                    continue
                try:
                    message = jsonrpc_message_adapter.validate_json(line, by_name=False)
                except Exception as e:  # the SDK's server answers it as its transport would
                    await to_server.send(e)
                    continue
                await to_server.send(SessionMessage(message))
        # stdin ended: what is in flight gets DRAIN_TIMEOUT to be answered
        tasks.cancel_scope.deadline = anyio.current_time() + DRAIN_TIMEOUT


class _Lines:
    """stdout: whole lines, in order, written without threads; also the lane's channel for
    calls on stdio (their progress and requests to the client)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = anyio.Lock()

    async def send(self, message: Mapping[str, Any]) -> None:
        await self.write(encode(message) + b"\n")

    async def write(self, data: bytes) -> None:
        async with self._lock:
            view = memoryview(data)
            while view:
                try:
                    written = os.write(self._fd, view)
                except BlockingIOError:
                    await anyio.wait_writable(self._fd)
                    continue
                view = view[written:]


async def _read_lines(fd: int) -> AsyncIterator[bytes]:
    """stdin's lines (blank ones skipped) until it ends."""
    buffer = b""
    while True:
        try:
            chunk = os.read(fd, READ_SIZE)
        except BlockingIOError:
            await anyio.wait_readable(fd)
            continue
        if not chunk:
            if buffer.strip():
                yield buffer
            return
        *lines, buffer = (buffer + chunk).split(b"\n")
        for line in lines:
            if line.strip():
                yield line
        if len(buffer) > MAX_LINE:
            logger.error("stdin: a line longer than %d bytes; the client is broken", MAX_LINE)
            return


@contextmanager
def _claimed() -> Iterator[tuple[int, int] | None]:
    """Private non-blocking duplicates of fds 0 and 1, with fd 0 on the null device and fd 1 on
    stderr while they are held; None (nothing changed) unless both are pipes, sockets or
    terminals, which the event loop can wait on."""
    if not (_waitable(0) and _waitable(1)):
        yield None
        return
    sys.stdout.flush()
    stdin, stdout = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(null, 0)
        os.dup2(2, 1)
    finally:
        os.close(null)
    blocking = os.get_blocking(stdin), os.get_blocking(stdout)
    os.set_blocking(stdin, False)
    os.set_blocking(stdout, False)
    try:
        yield stdin, stdout
    finally:
        os.set_blocking(stdin, blocking[0])  # they share the open file with the client's end
        os.set_blocking(stdout, blocking[1])
        os.dup2(stdin, 0)
        os.dup2(stdout, 1)
        os.close(stdin)
        os.close(stdout)


def _waitable(fd: int) -> bool:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)
