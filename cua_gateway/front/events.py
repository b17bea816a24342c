"""Resumable streams: every SSE event of streamable HTTP gets an id and is kept for a while, so a
client that reconnects with `Last-Event-ID` gets what it missed."""

from __future__ import annotations

import itertools
from collections import OrderedDict, deque

from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId
from mcp.types import JSONRPCMessage

EVENTS_PER_STREAM = 1000  # the oldest events of a busy stream are forgotten first
STREAMS = 1000  # streams kept; the least recently written is forgotten first


class MemoryEventStore(EventStore):
    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._streams: OrderedDict[StreamId, deque[tuple[int, JSONRPCMessage | None]]] = (
            OrderedDict()
        )
        self._stream_of: dict[int, StreamId] = {}

    def next_id(self) -> int:
        """A new event id, also for events kept elsewhere (the express lane's): one sequence,
        so a `Last-Event-ID` names one event."""
        return next(self._ids)

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        number = self.next_id()
        events = self._streams.setdefault(stream_id, deque())
        self._streams.move_to_end(stream_id)
        if len(events) == EVENTS_PER_STREAM:
            forgotten, _ = events.popleft()
            self._stream_of.pop(forgotten, None)
        events.append((number, message))
        self._stream_of[number] = stream_id
        while len(self._streams) > STREAMS:
            _, dropped = self._streams.popitem(last=False)
            for old, _ in dropped:
                self._stream_of.pop(old, None)
        return str(number)

    async def replay_events_after(
        self, last_event_id: EventId, send_callback: EventCallback
    ) -> StreamId | None:
        if not last_event_id.isdigit() or int(last_event_id) not in self._stream_of:
            return None
        after = int(last_event_id)
        stream_id = self._stream_of[after]
        for number, message in list(self._streams.get(stream_id, ())):
            if number > after and message is not None:
                await send_callback(EventMessage(message, str(number)))
        return stream_id
