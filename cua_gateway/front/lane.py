"""The express lane for `tools/call` over streamable HTTP: the hot request of an established
handshake-era session is served here, in front of the SDK's session manager, without the
SDK's per-message machinery (pydantic validation of every frame, memory streams and a task per
request on both sides of the session); everything else goes on to the SDK untouched.

What a client sees is the same as on the SDK's path: the answer is an SSE stream that opens with
a priming event (an event id to resume from), carries the call's progress and the requests its
server makes of the client (sampling, elicitation, roots; their answers, POSTed back, are taken
here), and ends with the result. Every event is kept, so a client that lost the stream
reconnects with `Last-Event-ID` and gets the rest, also of a call still running. A
`notifications/cancelled` naming a call in the lane cancels it.

Taken only when all of these hold, otherwise the SDK serves the request: a POST of one JSON-RPC
`tools/call` request with the content type and Accept the transport requires, a handshake-era
protocol version, and the id of a session the SDK still serves and the gateway has seen before.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
from mcp import MCPError
from mcp.server.connection import Connection
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
from mcp_types.jsonrpc import INTERNAL_ERROR, REQUEST_TIMEOUT
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cua_gateway import logs
from cua_gateway.downstream.session import ProgressFn
from cua_gateway.front._sdk import session_open
from cua_gateway.front.clients import ClientHub
from cua_gateway.front.events import MemoryEventStore
from cua_gateway.front.inputs import Exchange
from cua_gateway.front.mcp_server import Handlers

logger = logging.getLogger(__name__)

PRIME_AFTER = 0.01  # seconds: a call not answered by then has its stream opened
MAX_BODY = 4 * 1024 * 1024  # bytes: a larger request goes to the SDK, which refuses it
FEEDS = 1000  # finished calls kept for a client that comes back for their results
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


@dataclass(eq=False)
class _Session:
    """What the lane holds for one client session: its calls in flight, and what their servers
    asked the client that is not answered yet."""

    calls: dict[Any, anyio.CancelScope] = field(default_factory=dict)
    asked: dict[str, _Answer] = field(default_factory=dict)


@dataclass(eq=False)
class _Answer:
    done: anyio.Event = field(default_factory=anyio.Event)
    message: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True, eq=False)
class LaneOrigin:
    """A call in the lane, as the origin of what its server sends: requests go on the call's
    own stream, log messages to the client's session."""

    lane: ExpressLane
    connection: Connection
    session_id: str
    feed: _Feed
    reply: _Reply
    exchange: Exchange | None = None

    async def ask(
        self, method: str, params: Mapping[str, Any] | None, timeout: float
    ) -> dict[str, Any]:
        return await self.lane.ask(self, method, params, timeout)


class ExpressLane:
    """ASGI: `/mcp` with the lane in front of the SDK's session manager (`inner`)."""

    def __init__(
        self,
        inner: ASGIApp,
        manager: StreamableHTTPSessionManager,
        handlers: Handlers,
        hub: ClientHub,
        events: MemoryEventStore,
    ) -> None:
        self.inner = inner
        self.manager = manager
        self.handlers = handlers
        self.hub = hub
        self.events = events
        self._sessions: dict[str, _Session] = {}
        self._feeds: OrderedDict[_Feed, None] = OrderedDict()  # the newest last
        self._feed_of_event: dict[int, _Feed] = {}
        self._asks = itertools.count(1)

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
        message = _parse(body) if rest is None else None
        session_id = _text(headers[SESSION_ID])
        connection = self.hub.connection(session_id)
        if (
            isinstance(message, dict)
            and connection is not None
            and session_open(self.manager, session_id)
        ):
            if _is_call(message):
                await self._call(session_id, connection, message, send)
                return
            if self._answers(session_id, message) or self._cancels(session_id, message):
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
        request_id = message["id"]
        params: dict[str, Any] = message.get("params") or {}
        name = str(params.get("name"))
        token = (params.get("_meta") or {}).get("progressToken")
        session = self._sessions.setdefault(session_id, _Session())
        feed = self._open_feed(session_id)
        reply = _Reply(send, self._headers(session_id))
        origin = LaneOrigin(self, connection, session_id, feed, reply)
        self.hub.seen_connection(connection)
        logs.bind(method="tools/call", request_id=request_id)

        async def progress(progress: float, total: float | None, message: str | None) -> None:
            note = {"progressToken": token, "progress": progress}
            note |= {"total": total} if total is not None else {}
            note |= {"message": message} if message is not None else {}
            await self._emit(origin, {"method": "notifications/progress", "params": note})

        answer: dict[str, Any] | None = None
        async with anyio.create_task_group() as priming:
            priming.start_soon(self._open_after, origin, PRIME_AFTER)
            with anyio.CancelScope() as cancelled:
                session.calls[request_id] = cancelled
                try:
                    answer = await self._answer(name, params, progress, origin, token)
                finally:
                    session.calls.pop(request_id, None)
                    self._forget_idle(session_id)
            priming.cancel_scope.cancel()
        # a cancelled call is answered by no one (as on the SDK's path): its stream just ends
        await reply.finish(self._frame(feed, {"id": request_id, **answer}) if answer else b"")
        feed.end()

    async def _answer(
        self,
        name: str,
        params: Mapping[str, Any],
        progress: ProgressFn,
        origin: LaneOrigin,
        token: object,
    ) -> dict[str, Any]:
        """The call's `result`, or its `error`."""
        labels = ["", name]
        try:
            with self.handlers.counted("tools/call", labels):
                on_progress = progress if token is not None else None
                result = await self.handlers.invoke_tool(name, params, on_progress, origin, labels)
        except MCPError as e:
            return {"error": e.error.model_dump(exclude_none=True)}
        except Exception:
            logger.exception("tools/call %s failed in the gateway", name)
            failed = f"the gateway failed to call {name}; its log says why"
            return {"error": {"code": INTERNAL_ERROR, "message": failed}}
        return {"result": result}

    async def _open_after(self, origin: LaneOrigin, delay: float) -> None:
        await anyio.sleep(delay)
        await self._open(origin)

    async def _open(self, origin: LaneOrigin) -> None:
        await origin.reply.open(lambda: self._frame(origin.feed, None))

    async def ask(
        self,
        origin: LaneOrigin,
        method: str,
        params: Mapping[str, Any] | None,
        timeout: float,
    ) -> dict[str, Any]:
        """A server's request to the client, on the stream of the call that caused it."""
        asked = self._sessions.setdefault(origin.session_id, _Session()).asked
        ask_id = f"cua-{next(self._asks)}"
        answer = asked[ask_id] = _Answer()
        request: dict[str, Any] = {"id": ask_id, "method": method}
        if params is not None:
            request["params"] = dict(params)
        try:
            await self._emit(origin, request)
            with anyio.fail_after(timeout):
                await answer.done.wait()
        except TimeoutError:
            raise MCPError(
                REQUEST_TIMEOUT, f"the client did not answer {method} within {timeout:g} s"
            ) from None
        finally:
            asked.pop(ask_id, None)
            self._forget_idle(origin.session_id)
        reply = answer.message or {}
        if "error" in reply:
            error = reply["error"]
            raise MCPError(
                int(error.get("code", -32603)), str(error.get("message")), error.get("data")
            )
        result: dict[str, Any] = reply.get("result") or {}
        return result

    def _answers(self, session_id: str, message: Mapping[str, Any]) -> bool:
        """Take a client's answer to a request the lane sent it."""
        if "method" in message or not isinstance(message.get("id"), str):
            return False
        session = self._sessions.get(session_id)
        answer = session.asked.get(message["id"]) if session else None
        if answer is None:
            return False
        answer.message = message
        answer.done.set()
        return True

    def _cancels(self, session_id: str, message: Mapping[str, Any]) -> bool:
        if message.get("method") != "notifications/cancelled":
            return False
        session = self._sessions.get(session_id)
        request_id = (message.get("params") or {}).get("requestId")
        scope = session.calls.get(request_id) if session else None
        if scope is None:
            return False
        scope.cancel()
        return True

    async def _emit(self, origin: LaneOrigin, message: Mapping[str, Any]) -> None:
        """Send an event of a call in flight on its stream, opening the stream first."""
        await self._open(origin)
        await origin.reply.event(self._frame(origin.feed, message))

    def _frame(self, feed: _Feed, message: Mapping[str, Any] | None) -> bytes:
        """An SSE event with a new id (None: the priming event), kept in the call's feed."""
        number = self.events.next_id()
        if message is None:
            frame = b"id: %d\ndata: \n\n" % number
        else:
            data = json.dumps({"jsonrpc": "2.0", **message}, separators=(",", ":"))
            frame = b"event: message\nid: %d\ndata: %s\n\n" % (number, data.encode())
        feed.add(number, frame)
        self._feed_of_event[number] = feed
        return frame

    def _open_feed(self, session_id: str) -> _Feed:
        feed = _Feed(session_id)
        self._feeds[feed] = None
        while len(self._feeds) > FEEDS:
            forgotten, _ = self._feeds.popitem(last=False)
            for number, _frame in forgotten.events:
                self._feed_of_event.pop(number, None)
        return feed

    def _feed_of(self, last_event_id: str) -> _Feed | None:
        """The lane's feed an event id belongs to (None: it is the SDK's)."""
        return self._feed_of_event.get(int(last_event_id)) if last_event_id.isdigit() else None

    def _forget_idle(self, session_id: str) -> None:
        session = self._sessions.get(session_id)
        if session is not None and not session.calls and not session.asked:
            del self._sessions[session_id]

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


def _is_call(message: Mapping[str, Any]) -> bool:
    request_id = message.get("id")
    return (
        message.get("jsonrpc") == "2.0"
        and message.get("method") == "tools/call"
        and isinstance(request_id, (str, int))
        and not isinstance(request_id, bool)
        and isinstance(message.get("params"), dict)
        and isinstance(message["params"].get("name"), str)
    )


def _parse(body: bytes) -> object:
    try:
        return json.loads(body)
    except ValueError:
        return None  # the SDK answers with its parse error


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
