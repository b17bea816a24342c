"""MCP over a container's attached stdin/stdout: Docker's multiplexed stream, demuxed into lines."""

from __future__ import annotations

import logging
import struct
from collections import deque
from collections.abc import Callable

import anyio
from anyio.abc import SocketStream
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from cua_gateway.runtime._wire import Inbound, LineDecoder, SessionMessage, encode

logger = logging.getLogger(__name__)

HEADER = 8  # stream type (1 stdout, 2 stderr), three zero bytes, payload size (big-endian u32)
STDERR_TAIL = 20  # lines of a replica's stderr kept for error messages
READ_CHUNK = 65536


class Demuxer:
    """Splits Docker's attach stream into (stream, payload) frames, across arbitrary chunks."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> list[tuple[int, bytes]]:
        self._buffer += chunk
        frames = []
        while len(self._buffer) >= HEADER:
            (size,) = struct.unpack(">I", self._buffer[4:HEADER])
            if len(self._buffer) < HEADER + size:
                break
            frames.append((self._buffer[0], bytes(self._buffer[HEADER : HEADER + size])))
            del self._buffer[: HEADER + size]
        return frames


class StderrLines:
    """A replica's stderr, logged line by line, with the last lines kept for error messages."""

    def __init__(self, log: Callable[[str], None], tail: list[str]) -> None:
        self._buffer = bytearray()
        self._log = log
        self._tail: deque[str] = deque(maxlen=STDERR_TAIL)
        self._shared = tail

    def feed(self, data: bytes) -> None:
        self._buffer += data
        *lines, rest = self._buffer.split(b"\n")
        self._buffer[:] = rest
        for raw in lines:
            line = raw.decode(errors="replace").rstrip()
            self._log(line)
            self._tail.append(line)
        self._shared[:] = self._tail


async def pump_out(
    socket: SocketStream, inbound: MemoryObjectSendStream[Inbound], stderr: StderrLines
) -> None:
    """Container → session, until the container's output ends (it exited or was killed)."""
    demux, decoder = Demuxer(), LineDecoder()
    async with inbound:
        while True:
            try:
                chunk = await socket.receive(READ_CHUNK)
            except (
                anyio.EndOfStream,
                anyio.BrokenResourceError,
                anyio.ClosedResourceError,
                OSError,
            ):
                return
            for stream, payload in demux.feed(chunk):
                if stream == 2:
                    stderr.feed(payload)
                    continue
                for message in decoder.feed(payload):
                    try:
                        await inbound.send(message)
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                        return  # the session is gone


async def pump_in(
    socket: SocketStream,
    outbound: MemoryObjectReceiveStream[SessionMessage],
    inbound: MemoryObjectSendStream[Inbound],
) -> None:
    """Session → container; when the session closes its side, close the container's stdin."""
    try:
        async with outbound:
            async for message in outbound:
                await socket.send(encode(message))
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        await inbound.aclose()  # cannot write any more: let the session see the end
        return
    try:
        await socket.send_eof()
    except OSError:
        logger.debug("stdin of the container already closed")
