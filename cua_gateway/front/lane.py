"""The express lane for `tools/call`: the hot request of an established client session, served
without the SDK's per-message machinery (pydantic validation of every frame, memory streams and a
task per request on each side of its session), by the same handler code. Everything else goes
to the SDK untouched.

This module is the lane's core, whatever the transport: a call, what its server asks the client
meanwhile (sampling, elicitation, roots: requests with ids `cua-N` on the call's own channel,
whose answers the transport hands back with `take`), progress on that channel, and cancellation
by `notifications/cancelled`. `lane_http.py` (streamable HTTP) and `stdio.py` carry it.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeGuard

import anyio
from mcp import MCPError
from mcp.server.connection import Connection
from mcp_types.jsonrpc import INTERNAL_ERROR, REQUEST_TIMEOUT

from cua_gateway import logs
from cua_gateway.front.clients import ClientHub
from cua_gateway.front.inputs import Exchange
from cua_gateway.front.mcp_server import Handlers

logger = logging.getLogger(__name__)


class Channel(Protocol):
    async def send(self, message: Mapping[str, Any]) -> None:
        """A message of a call in flight (progress, a request to the client), sent on the
        call's own channel; `jsonrpc` is added by the transport."""
        ...


@dataclass(eq=False)
class _Answer:
    done: anyio.Event = field(default_factory=anyio.Event)
    message: Mapping[str, Any] | None = None


@dataclass(eq=False)
class _Session:
    """What the lane holds for one client session: its calls in flight, and what their servers
    asked the client that is not answered yet."""

    calls: dict[Any, anyio.CancelScope] = field(default_factory=dict)
    asked: dict[str, _Answer] = field(default_factory=dict)
    """The lane's requests to the client, by id, waiting for the client's answer."""


@dataclass(frozen=True, slots=True, eq=False)
class LaneOrigin:
    """A call in the lane, as the origin of what its server sends: requests go on the call's
    own channel, log messages to the client's session."""

    lane: Lane
    connection: Connection
    session: str
    channel: Channel
    exchange: Exchange | None = None

    async def ask(
        self, method: str, params: Mapping[str, Any] | None, timeout: float
    ) -> dict[str, Any]:
        return await self.lane.ask(self, method, params, timeout)


class Lane:
    """The calls in the lane, by client session (a transport's key for it)."""

    def __init__(self, handlers: Handlers, hub: ClientHub) -> None:
        self.handlers = handlers
        self.hub = hub
        self._sessions: dict[str, _Session] = {}
        self._asks = itertools.count(1)

    async def call(
        self, session: str, connection: Connection, message: Mapping[str, Any], channel: Channel
    ) -> dict[str, Any] | None:
        """Serve the `tools/call` request `message`: its answer (`id` and `result` or
        `error`), or None when the client cancelled it (a cancelled call is answered by no
        one, as on the SDK's path)."""
        request_id = message["id"]
        params: Mapping[str, Any] = message.get("params") or {}
        name = str(params.get("name"))
        token = (params.get("_meta") or {}).get("progressToken")
        state = self._sessions.setdefault(session, _Session())
        origin = LaneOrigin(self, connection, session, channel)
        logs.bind(method="tools/call", request_id=request_id)

        async def progress(progress: float, total: float | None, message: str | None) -> None:
            note = {"progressToken": token, "progress": progress}
            note |= {"total": total} if total is not None else {}
            note |= {"message": message} if message is not None else {}
            await channel.send({"method": "notifications/progress", "params": note})

        labels = ["", name]
        answer: dict[str, Any] | None = None
        with anyio.CancelScope() as cancelled:
            state.calls[request_id] = cancelled
            try:
                with self.handlers.counted("tools/call", labels):
                    on_progress = progress if token is not None else None
                    result = await self.handlers.invoke_tool(
                        name, params, on_progress, origin, labels
                    )
                answer = {"id": request_id, "result": result}
            except MCPError as e:
                answer = {"id": request_id, "error": e.error.model_dump(exclude_none=True)}
            except Exception:
                logger.exception("tools/call %s failed in the gateway", name)
                failed = f"the gateway failed to call {name}; its log says why"
                answer = {"id": request_id, "error": {"code": INTERNAL_ERROR, "message": failed}}
            finally:
                state.calls.pop(request_id, None)
                self._forget_idle(session)
        return answer

    async def ask(
        self, origin: LaneOrigin, method: str, params: Mapping[str, Any] | None, timeout: float
    ) -> dict[str, Any]:
        """A server's request to the client, on the channel of the call that caused it."""
        asked = self._sessions.setdefault(origin.session, _Session()).asked
        ask_id = f"cua-{next(self._asks)}"
        answer = asked[ask_id] = _Answer()
        request: dict[str, Any] = {"id": ask_id, "method": method}
        if params is not None:
            request["params"] = dict(params)
        try:
            await origin.channel.send(request)
            with anyio.fail_after(timeout):
                await answer.done.wait()
        except TimeoutError:
            raise MCPError(
                REQUEST_TIMEOUT, f"the client did not answer {method} within {timeout:g} s"
            ) from None
        finally:
            asked.pop(ask_id, None)
            self._forget_idle(origin.session)
        reply = answer.message or {}
        if "error" in reply:
            error = reply["error"]
            code, text = int(error.get("code", INTERNAL_ERROR)), str(error.get("message"))
            raise MCPError(code, text, error.get("data"))
        result: dict[str, Any] = reply.get("result") or {}
        return result

    def take(self, session: str, message: Mapping[str, Any]) -> bool:
        """Take a message that concerns the lane: the client's answer to a request the lane
        sent it, or its cancellation of a call in the lane. False: it is the SDK's."""
        state = self._sessions.get(session)
        if state is None:
            return False
        if "method" not in message and isinstance(message.get("id"), str):
            answer = state.asked.get(message["id"])
            if answer is not None:
                answer.message = message
                answer.done.set()
                return True
        if message.get("method") == "notifications/cancelled":
            scope = state.calls.get((message.get("params") or {}).get("requestId"))
            if scope is not None:
                scope.cancel()
                return True
        return False

    def _forget_idle(self, session: str) -> None:
        state = self._sessions.get(session)
        if state is not None and not state.calls and not state.asked:
            del self._sessions[session]


def encode(message: Mapping[str, Any]) -> bytes:
    """A JSON-RPC message of the lane (given without `jsonrpc`) as compact JSON."""
    return json.dumps({"jsonrpc": "2.0", **message}, separators=(",", ":")).encode()


def parse(data: bytes) -> object:
    """JSON, or None when it is not (the SDK answers that with its parse error)."""
    try:
        return json.loads(data)
    except ValueError:
        return None


def is_call(message: object) -> TypeGuard[dict[str, Any]]:
    """Whether `message` is one well-formed JSON-RPC `tools/call` request."""
    if not isinstance(message, dict):
        return False
    request_id = message.get("id")
    params = message.get("params")
    return (
        message.get("jsonrpc") == "2.0"
        and message.get("method") == "tools/call"
        and isinstance(request_id, (str, int))
        and not isinstance(request_id, bool)
        and isinstance(params, dict)
        and isinstance(params.get("name"), str)
    )
