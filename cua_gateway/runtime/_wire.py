"""MCP messages as newline-delimited JSON: the one place the runtimes touch the mcp SDK's types."""

from __future__ import annotations

from typing import TypeAlias

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.shared._stream_protocols import ReadStream as _ReadStream
from mcp.shared._stream_protocols import WriteStream as _WriteStream
from mcp.shared.message import SessionMessage
from mcp.types import jsonrpc_message_adapter
from pydantic import ValidationError

MAX_LINE = 64 * 2**20  # a JSON-RPC message larger than this is refused, not buffered forever

Inbound: TypeAlias = SessionMessage | Exception
ReadStream: TypeAlias = _ReadStream[Inbound]
WriteStream: TypeAlias = _WriteStream[SessionMessage]

__all__ = [
    "Inbound",
    "LineDecoder",
    "ReadStream",
    "SessionMessage",
    "WriteStream",
    "encode",
    "pipes",
]


def encode(message: SessionMessage) -> bytes:
    return message.message.model_dump_json(by_alias=True, exclude_unset=True).encode() + b"\n"


class LineDecoder:
    """Bytes in, JSON-RPC messages out; a line that is not JSON-RPC becomes an exception."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Inbound]:
        self._buffer += data
        *lines, rest = self._buffer.split(b"\n")
        if len(rest) > MAX_LINE:
            raise ValueError(f"a message of more than {MAX_LINE} bytes without a newline")
        self._buffer[:] = rest
        return [_parse(bytes(line)) for line in lines if line.strip()]


def _parse(line: bytes) -> Inbound:
    try:
        return SessionMessage(jsonrpc_message_adapter.validate_json(line, by_name=False))
    except ValidationError as e:
        return ValueError(f"not a JSON-RPC message: {line[:200]!r} ({e.error_count()} errors)")


def pipes() -> tuple[
    MemoryObjectSendStream[Inbound],
    MemoryObjectReceiveStream[Inbound],
    MemoryObjectSendStream[SessionMessage],
    MemoryObjectReceiveStream[SessionMessage],
]:
    """Two unbuffered channels: replica → session (`inbound`) and session → replica (`outbound`)."""
    inbound_send, inbound_receive = anyio.create_memory_object_stream[Inbound](0)
    outbound_send, outbound_receive = anyio.create_memory_object_stream[SessionMessage](0)
    return inbound_send, inbound_receive, outbound_send, outbound_receive
