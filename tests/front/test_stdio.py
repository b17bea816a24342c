"""The stdio front's threadless pipes: lines in whatever chunks they arrive, writes of any size
to a reader slower than the writer, and the lane's part in what comes in."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import anyio
import anyio.lowlevel
import pytest

from cua_gateway.front.lane import is_call
from cua_gateway.front.stdio import _Lines, _read_lines

WAIT = 10.0  # seconds


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read, write = os.pipe()
    os.set_blocking(read, False)
    os.set_blocking(write, False)
    yield read, write
    for fd in (read, write):
        with contextlib.suppress(OSError):  # a test may have closed it
            os.close(fd)


def test_lines_are_read_across_chunks_and_blank_lines_skipped(pipe: tuple[int, int]) -> None:
    read, write = pipe

    async def scenario() -> list[bytes]:
        lines: list[bytes] = []
        with anyio.fail_after(WAIT):
            await feed(lines)
        return lines

    async def feed(lines: list[bytes]) -> None:
        async with anyio.create_task_group() as tasks:

            async def collect() -> None:
                async for line in _read_lines(read):
                    lines.append(line)

            tasks.start_soon(collect)
            for chunk in (b'{"a":', b"1}\n\n", b'{"b":2}\n{"c"', b":3}"):
                os.write(write, chunk)
                await anyio.lowlevel.checkpoint()  # the reader may see each chunk on its own
            os.close(write)

    assert anyio.run(scenario) == [b'{"a":1}', b'{"b":2}', b'{"c":3}']


def test_a_write_larger_than_the_pipe_arrives_whole_and_in_order(pipe: tuple[int, int]) -> None:
    read, write = pipe
    big = b"x" * (4 * 1024 * 1024) + b"\n"  # far more than a pipe buffer holds
    answer = b'{"jsonrpc":"2.0","id":1,"result":{}}\n'

    async def scenario() -> bytes:
        received = bytearray()
        out = _Lines(write)
        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(drain, received)
                await out.write(big)
                await out.send({"id": 1, "result": {}})
        return bytes(received)

    async def drain(received: bytearray) -> None:
        while len(received) < len(big) + len(answer):
            try:
                received.extend(os.read(read, 65536))
            except BlockingIOError:
                await anyio.wait_readable(read)

    assert anyio.run(scenario) == big + answer


@pytest.mark.parametrize(
    ("message", "lane"),
    [
        ({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo"}}, True),
        ({"jsonrpc": "2.0", "id": "a", "method": "tools/call", "params": {"name": "x"}}, True),
        ({"jsonrpc": "2.0", "id": True, "method": "tools/call", "params": {"name": "x"}}, False),
        ({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "x"}}, False),
        ({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {}}, False),
        ({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, False),
        ([{"jsonrpc": "2.0", "id": 1, "method": "tools/call"}], False),  # a batch: the SDK's
    ],
)
def test_only_well_formed_single_tool_calls_take_the_lane(message: object, lane: bool) -> None:
    assert is_call(message) is lane
