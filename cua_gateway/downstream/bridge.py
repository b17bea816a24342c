"""Messages that downstream servers send on their own — notifications, and requests such as
sampling or elicitation — go up through an `Upstream`, which the front implements.

`origins` are the opaque tokens of the client calls in flight on the replica that sent the
message: a request that can only be answered by the client whose call caused it goes to that
client, never to another.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from cua_gateway.errors import DownstreamError

METHOD_NOT_FOUND = -32601


class Upstream(Protocol):
    async def notify(
        self, server: str, method: str, params: Mapping[str, Any] | None, origins: Sequence[object]
    ) -> None:
        """Pass a notification on (logging, resource updates, list changes)."""
        ...

    async def request(
        self, server: str, method: str, params: Mapping[str, Any] | None, origins: Sequence[object]
    ) -> dict[str, Any]:
        """Ask a client (sampling, elicitation, roots); raises `DownstreamError` with the answer's
        JSON-RPC error when there is no client to ask or it refuses."""
        ...


class NoUpstream:
    """No clients: notifications are dropped, requests refused."""

    async def notify(
        self, server: str, method: str, params: Mapping[str, Any] | None, origins: Sequence[object]
    ) -> None:
        return None

    async def request(
        self, server: str, method: str, params: Mapping[str, Any] | None, origins: Sequence[object]
    ) -> dict[str, Any]:
        raise DownstreamError(server, METHOD_NOT_FOUND, f"no client to answer {method}")
