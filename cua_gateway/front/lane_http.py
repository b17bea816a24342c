"""The express lane over streamable HTTP (`lane.py` is the lane itself): in front of the SDK's
session manager at `/mcp`, a POST of one `tools/call` of an established handshake-era session
is served here.

What a client sees is what the SDK's path gives: an SSE response whose events carry ids (from
the event store's sequence, so one `Last-Event-ID` names one event) and are kept in the call's
feed. A call answered within PRIME_AFTER goes out in one piece; a longer one first opens its
stream with a priming event (an id to resume from), then carries progress and what the call's
server asks the client. A `GET` with the `Last-Event-ID` of a lane call replays the rest and
follows the call to its end. The client's answers to the lane's requests and its
`notifications/cancelled` for lane calls, POSTed, are taken here.

Taken only when all of these hold, otherwise the SDK serves the request: a POST of one JSON-RPC
`tools/call` request with the content type and Accept the transport requires, a handshake-era
protocol version, and the id of a session the SDK still serves and the gateway has seen before
(any request through the SDK's path, e.g. `tools/list`, makes it known).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
from mcp.server.connection import Connection
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cua_gateway.front._sdk import session_open
from cua_gateway.front.events import MemoryEventStore
from cua_gateway.front.lane import Lane, encode, is_call, parse

logger = logging.getLogger(__name__)

PRIME_AFTER = 0.01  # seconds: a call not answered by then has its stream opened
MAX_BODY = 4 * 1024 * 1024  # bytes: a larger request goes to the SDK, which refuses it
FEEDS = 1000  # calls whose events are kept for a client that comes back for them
FEED_BYTES = 64 * 1024 * 1024  # and the bytes of events kept at most (the oldest calls go first)
SESSION_ID = MCP_SESSION_ID_HEADER.encode()
PROTOCOL_VERSION = MCP_PROTOCOL_VERSION_HEADER.encode()
LAST_EVENT_ID = b"last-event-id"
SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
]


@dataclass(eq=False)
class _Feed:
    """The events of one call in the lane, kept so a reconnecting client can follow them."""

    session_id: str
    events: list[tuple[int, bytes]] = field(default_factory=list)
    changed: anyio.Event = field(default_factory=anyio.Event)
    done: bool = False

    def add(self, number: int, frame: bytes) -> None:
        self.events.append((number, frame))
        self.changed.set()
        self.changed = anyio.Event()

    def end(self) -> None:
        self.done = True
        self.changed.set()


class _Reply:
    """The response to one call's POST. It opens — headers, then the priming event, an id to
    resume from — as soon as there is something to say before the result, or PRIME_AFTER after
    the call began; a call answered sooner goes out in one piece (fewer writes, one wake-up of
    the client), leaving nothing to resume."""

    def __init__(self, send: Send, headers: list[tuple[bytes, bytes]]) -> None:
        self._send = send
        self._headers = headers
        self._state = "new"  # new → open → done
        self._lock = anyio.Lock()

    async def open(self, priming: Callable[[], bytes]) -> None:
        async with self._lock:
            if self._state != "new":
                return
            self._state = "open"
            with anyio.CancelScope(shield=True):  # a half-written response is worse than none
                await self._out(
                    {"type": "http.response.start", "status": 200, "headers": self._headers}
                )
                await self._out(
                    {"type": "http.response.body", "body": priming(), "more_body": True}
                )

    async def event(self, frame: bytes) -> None:
        async with self._lock:
            await self._out({"type": "http.response.body", "body": frame, "more_body": True})

    async def finish(self, frame: bytes) -> None:
        async with self._lock:
            if self._state == "new":
                length = (b"content-length", str(len(frame)).encode())
                start = {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [*self._headers, length],
                }
                await self._out(start)
            self._state = "done"
            await self._out({"type": "http.response.body", "body": frame, "more_body": False})

    async def _out(self, message: Message) -> None:
        try:
            await self._send(message)
        except OSError:  # the client left; what it missed is in the feed when it comes back
            logger.debug("a client left its call's stream; the call goes on")


@dataclass(frozen=True, slots=True, eq=False)
class _Stream:
    """A lane call's channel over HTTP: events on its response, opened on the first one."""

    lane: ExpressLane
    feed: _Feed
    reply: _Reply

    async def open(self) -> None:
        await self.reply.open(lambda: self.lane.frame(self.feed, None))

    async def send(self, message: Mapping[str, Any]) -> None:
        await self.open()
        await self.reply.event(self.lane.frame(self.feed, message))

    async def open_after(self, delay: float) -> None:
        await anyio.sleep(delay)
        await self.open()


class ExpressLane:
    """ASGI: `/mcp`, with the lane in front of the SDK's session manager (`inner`)."""

    def __init__(
        self,
        inner: ASGIApp,
        manager: StreamableHTTPSessionManager,
        lane: Lane,
        events: MemoryEventStore,
    ) -> None:
        self.inner = inner
        self.manager = manager
        self.lane = lane
        self.events = events
        self._feeds: OrderedDict[_Feed, None] = OrderedDict()  # the newest last
        self._feed_of_event: dict[int, _Feed] = {}
        self._kept = 0  # bytes of events in the feeds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"])
        if scope["method"] == "GET" and LAST_EVENT_ID in headers:
            feed = self._feed_of(headers[LAST_EVENT_ID].decode("latin-1"))
            if feed is not None and feed.session_id == _text(headers.get(SESSION_ID)):
                await self._resume(feed, int(headers[LAST_EVENT_ID]), send)
                return
        if scope["method"] != "POST" or not self._eligible(headers):
            await self.inner(scope, receive, send)
            return
        body, rest = await _read_body(receive)
        message = parse(body) if rest is None else None
        session_id = _text(headers[SESSION_ID])
        connection = self.lane.hub.connection(session_id)
        if (
            isinstance(message, dict)
            and connection is not None
            and session_open(self.manager, session_id)
        ):
            if is_call(message):
                await self._call(session_id, connection, message, send)
                return
            if self.lane.take(session_id, message):
                await _accepted(send)
                return
        await self.inner(scope, _replay(body, rest, receive), send)

    def _eligible(self, headers: Mapping[bytes, bytes]) -> bool:
        accept = headers.get(b"accept", b"")
        version = headers.get(PROTOCOL_VERSION)
        return (
            SESSION_ID in headers
            and headers.get(b"content-type", b"").startswith(b"application/json")
            and b"application/json" in accept
            and b"text/event-stream" in accept
            and (version is None or version.decode("latin-1") in HANDSHAKE_PROTOCOL_VERSIONS)
        )

    async def _call(
        self, session_id: str, connection: Connection, message: dict[str, Any], send: Send
    ) -> None:
        feed = self._open_feed(session_id)
        reply = _Reply(send, self._headers(session_id))
        stream = _Stream(self, feed, reply)
        async with anyio.create_task_group() as priming:
            priming.start_soon(stream.open_after, PRIME_AFTER)
            answer = await self.lane.call(session_id, connection, message, stream)
            priming.cancel_scope.cancel()
        await reply.finish(self.frame(feed, answer) if answer is not None else b"")
        feed.end()

    def frame(self, feed: _Feed, message: Mapping[str, Any] | None) -> bytes:
        """An SSE event with a new id (None: the priming event), kept in the call's feed."""
        number = self.events.next_id()
        if message is None:
            frame = b"id: %d\ndata: \n\n" % number
        else:
            frame = b"event: message\nid: %d\ndata: %s\n\n" % (number, encode(message))
        feed.add(number, frame)
        if feed in self._feeds:  # else forgotten already (see _forget_old): not resumable
            self._feed_of_event[number] = feed
            self._kept += len(frame)
            self._forget_old()
        return frame

    def _open_feed(self, session_id: str) -> _Feed:
        feed = _Feed(session_id)
        self._feeds[feed] = None
        self._forget_old()
        return feed

    def _forget_old(self) -> None:
        """Forget the oldest calls' events past FEEDS calls or FEED_BYTES bytes (never the
        newest call's: it is being answered)."""
        while len(self._feeds) > FEEDS or (self._kept > FEED_BYTES and len(self._feeds) > 1):
            forgotten, _ = self._feeds.popitem(last=False)
            for number, frame in forgotten.events:
                self._feed_of_event.pop(number, None)
                self._kept -= len(frame)

    def _feed_of(self, last_event_id: str) -> _Feed | None:
        """The lane's feed an event id belongs to (None: it is the SDK's)."""
        return self._feed_of_event.get(int(last_event_id)) if last_event_id.isdigit() else None

    async def _resume(self, feed: _Feed, after: int, send: Send) -> None:
        """Replay a call's events after `after`, then follow it until it ends."""
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": self._headers(feed.session_id),
            }
        )
        sent = after
        while True:
            changed = feed.changed
            for number, frame in feed.events:
                if number > sent:
                    await send({"type": "http.response.body", "body": frame, "more_body": True})
                    sent = number
            if feed.done:
                break
            await changed.wait()
        await _close(send)

    def _headers(self, session_id: str) -> list[tuple[bytes, bytes]]:
        return [*SSE_HEADERS, (SESSION_ID, session_id.encode())]


def _text(value: bytes | None) -> str:
    return value.decode("latin-1") if value is not None else ""


async def _read_body(receive: Receive) -> tuple[bytes, Message | None]:
    """The request body, or, past MAX_BODY or at a disconnect, what was read and the message
    that stopped the reading (passed on to the SDK as it came)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), message
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), None
        if size > MAX_BODY:
            return b"".join(chunks), {"type": "http.request", "body": b"", "more_body": True}


def _replay(body: bytes, rest: Message | None, receive: Receive) -> Receive:
    """`receive` for the SDK, starting over with the body the lane has read."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": rest is not None}]
    if rest is not None and rest["type"] != "http.request":
        pending.append(rest)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay


async def _accepted(send: Send) -> None:
    await send({"type": "http.response.start", "status": 202, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def _close(send: Send) -> None:
    await send({"type": "http.response.body", "body": b"", "more_body": False})
