"""The era bridge for server requests: a 2026-07-28 client has no back-channel, so when a
handshake-era server asks for sampling, elicitation or roots during that client's call, the
gateway answers the call with an `InputRequiredResult` carrying the server's requests, keeps the
server's call waiting, and relays the client's `inputResponses` back when it retries the call
with the echoed `requestState`."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskGroup

from cua_gateway.errors import DownstreamError, InvalidRequest

ANSWER_TIMEOUT = 300.0  # seconds a server waits for the client to come back with its answers
RESULT_TTL = 60.0  # seconds a finished call's result waits for a client that has not retried yet
NO_ANSWER = -32603

Work = Callable[[], Awaitable[dict[str, Any]]]


@dataclass(eq=False)
class Exchange:
    """One client call that may need several rounds of input."""

    state: str = field(default_factory=lambda: uuid.uuid4().hex)
    result: dict[str, Any] | None = None
    error: Exception | None = None
    done: anyio.Event = field(default_factory=anyio.Event)
    asks: dict[str, tuple[str, Mapping[str, Any] | None]] = field(default_factory=dict)
    answers: dict[str, Any] = field(default_factory=dict)
    answered: dict[str, anyio.Event] = field(default_factory=dict)
    _keys: itertools.count[int] = field(default_factory=itertools.count)
    _changed: anyio.Event = field(default_factory=anyio.Event)

    async def ask(
        self, server: str, method: str, params: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        """What the server asked, answered by the client on its next retry."""
        key = f"{server}-{next(self._keys)}"
        self.asks[key] = (method, params)
        self.answered[key] = anyio.Event()
        self._wake()
        with anyio.move_on_after(ANSWER_TIMEOUT):
            await self.answered[key].wait()
        self.asks.pop(key, None)
        if key not in self.answers:
            raise DownstreamError(server, NO_ANSWER, f"the client did not answer {method} in time")
        answer: dict[str, Any] = self.answers.pop(key)
        return answer

    def answer(self, responses: Mapping[str, Any]) -> None:
        for key, response in responses.items():
            if key in self.answered:
                self.answers[key] = response
                self.answered[key].set()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def outcome(self) -> dict[str, Any]:
        """The call's result, or an InputRequiredResult while the server waits for answers."""
        while True:
            changed = self._changed
            if self.done.is_set():
                if self.error is not None:
                    raise self.error
                assert self.result is not None
                return self.result
            waiting = {k: v for k, v in self.asks.items() if k not in self.answers}
            if waiting:
                requests = {
                    key: {"method": method, "params": dict(params or {})}
                    for key, (method, params) in waiting.items()
                }
                return {
                    "resultType": "input_required",
                    "inputRequests": requests,
                    "requestState": self.state,
                }
            async with anyio.create_task_group() as race:
                for event in (changed, self.done):
                    race.start_soon(_set_then_cancel, event, race.cancel_scope)


async def _set_then_cancel(event: anyio.Event, scope: anyio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


class InputBridge:
    """Holds the exchanges; their server calls run in the gateway's own task group, since they
    outlive the client request that started them."""

    def __init__(self) -> None:
        self._exchanges: dict[str, Exchange] = {}
        self._tasks: TaskGroup | None = None

    async def run(self) -> None:
        async with anyio.create_task_group() as tasks:
            self._tasks = tasks
            await anyio.sleep_forever()

    def new(self) -> Exchange:
        exchange = Exchange()
        self._exchanges[exchange.state] = exchange
        return exchange

    async def serve(self, exchange: Exchange, work: Work) -> dict[str, Any]:
        """Start the call in the background; return its result or what it needs first."""
        assert self._tasks is not None, "the bridge is not running"
        self._tasks.start_soon(self._complete, exchange, work)
        return await self._outcome(exchange)

    async def resume(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """A retry carrying `requestState` and `inputResponses`."""
        exchange = self._exchanges.get(str(params.get("requestState")))
        if exchange is None:
            raise InvalidRequest("unknown or expired requestState")
        exchange.answer(params.get("inputResponses") or {})
        return await self._outcome(exchange)

    async def _outcome(self, exchange: Exchange) -> dict[str, Any]:
        try:
            outcome = await exchange.outcome()
        except Exception:
            self._exchanges.pop(exchange.state, None)
            raise
        if outcome.get("resultType") != "input_required":
            self._exchanges.pop(exchange.state, None)
        return outcome

    async def _complete(self, exchange: Exchange, work: Work) -> None:
        try:
            exchange.result = await work()
        except Exception as e:  # delivered to the client by `outcome`
            exchange.error = e
        finally:
            exchange.done.set()
        await anyio.sleep(RESULT_TTL)
        self._exchanges.pop(exchange.state, None)
