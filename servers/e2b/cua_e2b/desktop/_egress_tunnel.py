"""The tunnel between an egress proxy and its agent in the desktop: frames over one `docker
exec`'s stdin and stdout (which Docker wraps in its own frames: an 8-byte header, stream, 0, 0,
0, size), and one connection's end of it on the host (`Channel`).

The tunnel's own frames, both ways: a 9-byte header (kind: 1 byte, connection id: 4 bytes,
payload size: 4 bytes, big-endian) then the payload, at most CHUNK bytes.
  HELLO (host, id 0)       the host reads: the agent may listen now
  READY (agent, id 0)      the agent listens on the proxy's port
  OPEN  (agent)            a new connection; ids only increase, never reused
  DATA                     bytes of a connection
  EOF                      the sender will send no more on it (a half-close)
  CREDIT                   payload: 4 bytes, a number of bytes the receiver has consumed
  CLOSE                    the sender has dropped the connection (a reset): forget it
Each side may have at most WINDOW bytes of a connection's DATA unconsumed by the other (the
sender waits for CREDIT), so one slow reader holds back only its own connection and every
buffer stays bounded. A connection ends cleanly once EOF has passed both ways; frames for a
connection already forgotten are ignored.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Awaitable, Callable

import anyio

CHUNK = 64 * 1024  # bytes of one DATA frame at most
WINDOW = 256 * 1024  # bytes of one connection in flight, each way

HELLO, READY, OPEN, DATA, EOF, CREDIT, CLOSE = range(1, 8)
HEADER = struct.Struct(">BII")


class ProtocolError(Exception):
    """The agent broke the tunnel's protocol."""


class Channel:
    """One connection of the tunnel, as the host sees it: its bytes from the desktop (at most
    WINDOW of them buffered) and its credit for sending there."""

    def __init__(self, cid: int, send: Callable[[int, int, bytes], Awaitable[None]]) -> None:
        self.id = cid
        self._send = send
        self._inbox: deque[bytes] = deque()
        self._buffered = 0
        self._ended = False  # EOF came from the desktop
        self._arrived = anyio.Event()
        self._consumed = 0  # bytes received and not yet credited back
        self._credit = WINDOW
        self._granted = anyio.Event()
        self.scope = anyio.CancelScope()
        self.received_eof = False
        self.sent_eof = False
        self.dropped = False  # the desktop's side dropped it

    @property
    def finished(self) -> bool:
        return self.received_eof and self.sent_eof

    def feed(self, data: bytes) -> None:
        self._buffered += len(data)
        if self._ended or self._buffered > WINDOW:
            raise ProtocolError(f"connection {self.id} sent beyond its window or its end")
        self._inbox.append(data)
        self._arrived.set()

    def feed_eof(self) -> None:
        self._ended = True
        self._arrived.set()

    def grant(self, count: int) -> None:
        self._credit += count
        if self._credit > WINDOW:
            raise ProtocolError(f"connection {self.id} was credited beyond its window")
        self._granted.set()

    def drop(self) -> None:
        self.dropped = True
        self.scope.cancel()

    async def receive(self) -> bytes:
        """The next bytes from the desktop; b"" once it has sent EOF."""
        while not self._inbox:
            if self._ended:
                self.received_eof = True
                return b""
            self._arrived = anyio.Event()
            await self._arrived.wait()
        data = self._inbox.popleft()
        self._buffered -= len(data)
        self._consumed += len(data)
        if self._consumed >= WINDOW // 4:
            consumed, self._consumed = self._consumed, 0
            await self._send(CREDIT, self.id, consumed.to_bytes(4, "big"))
        return data

    async def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            while self._credit <= 0:
                self._granted = anyio.Event()
                await self._granted.wait()
            size = min(len(view), self._credit, CHUNK)
            self._credit -= size
            await self._send(DATA, self.id, bytes(view[:size]))
            view = view[size:]

    async def send_eof(self) -> None:
        await self._send(EOF, self.id, b"")
        self.sent_eof = True
