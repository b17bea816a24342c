"""One connection of an egress proxy (`desktop/egress.py`), served on the host: an HTTP proxy
client's request, checked against the desktop's allowlist, then its bytes both ways.

A client asks `CONNECT host:port` (HTTPS, or any TCP) or for an absolute `http://` URL, which is
sent on in origin form with `Connection: close` and without the proxy's own fields. The target is
checked against the `EgressPolicy`, resolved here, and each address it resolves to is checked
again (a private, loopback or otherwise non-public address must itself be on the allowlist, so
that a name cannot be made to point at this host), then connected to by that checked address.
Anything else gets our own answer: `403 Forbidden` (or 400, 408, 431, 502, 504) with a one-line
reason. Allowed and refused targets are logged at INFO, on the egress's logger.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import anyio
import anyio.abc

from cua_e2b.desktop._egress_tunnel import Channel
from cua_e2b.desktop.allowlist import (
    EgressPolicy,
    IPAddress,
    address_of,
    parse_port,
    plain,
    split_host_port,
)

logger = logging.getLogger("cua_e2b.desktop.egress")  # the egress's records, under one name

HEAD_TIMEOUT = 30.0  # seconds for a client to send its request head
RESOLVE_TIMEOUT = 5.0  # seconds to resolve a target's name
CONNECT_TIMEOUT = 10.0  # seconds to connect to a target (all of its addresses together)
ANSWER_TIMEOUT = 5.0  # seconds for a client to take one of our own answers and close
HEAD_LIMIT = 64 * 1024  # bytes of a request head

REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    502: "Bad Gateway",
    504: "Gateway Timeout",
}
DROPPED_FIELDS = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authorization"})


async def proxy(channel: Channel, policy: EgressPolicy, name: str) -> None:
    """Serve one connection of desktop `name`'s tunnel: its request, then its bytes both ways
    when the target is allowed; our own one-line answer otherwise."""
    try:
        with anyio.fail_after(HEAD_TIMEOUT):
            received = await _read_head(channel)
    except TimeoutError:
        await _answer(channel, 408, f"no request head within {HEAD_TIMEOUT:g} s")
        return
    except _HeadTooLarge:
        await _answer(channel, 431, f"the request head is over {HEAD_LIMIT} bytes")
        return
    if received is None:  # closed before asking for anything
        await channel.send_eof()
        return
    head, rest = received
    try:
        request = _Request.parse(head)
    except _BadRequest as e:
        await _answer(channel, 400, str(e))
        return
    target = request.target
    if not policy.allows(request.host, request.port):
        await _refuse(channel, request, f"{target} is not on this desktop's egress allowlist", name)
        return
    try:
        addresses = await _resolve(request.host, request.port)
    except (OSError, TimeoutError) as e:
        reason = f"cannot resolve {request.host}: {_why(e)}"
        logger.info("egress %s: %s %s failed: %s", name, request.method, target, reason)
        await _answer(channel, 502, reason)
        return
    admitted = [a for a in addresses if policy.allows_address(a, request.port)]
    if not admitted:
        await _refuse(
            channel,
            request,
            f"{request.host} resolves to {addresses[0]}, a private, loopback or reserved "
            "address that is not on this desktop's egress allowlist",
            name,
        )
        return
    try:
        upstream, address = await _connect(admitted, request.port)
    except (OSError, TimeoutError) as e:
        timeout = isinstance(e, TimeoutError)
        reason = (
            f"{target} did not answer within {CONNECT_TIMEOUT:g} s"
            if timeout
            else f"cannot connect to {target}: {_why(e)}"
        )
        logger.info("egress %s: %s %s failed: %s", name, request.method, target, reason)
        await _answer(channel, 504 if timeout else 502, reason)
        return
    logger.info("egress %s: allowed %s %s (%s)", name, request.method, target, address)
    async with upstream:
        if request.head is None:
            await channel.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
            first = rest
        else:
            first = request.head + rest
        await _pipe(channel, upstream, first)


async def _refuse(channel: Channel, request: _Request, reason: str, name: str) -> None:
    logger.info("egress %s: refused %s %s: %s", name, request.method, request.target, reason)
    await _answer(channel, 403, reason)


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    host: str  # as asked: a name or an IP address, without brackets
    port: int
    head: bytes | None  # the head to send the target, in origin form; None for CONNECT

    @property
    def target(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, head: bytes) -> _Request:
        line, _, fields = head[:-4].partition(b"\r\n")
        parts = line.decode("latin-1").split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _BadRequest(
                "this is an HTTP proxy: send CONNECT host:port, or ask for an absolute http:// URL"
            )
        method, target, version = parts
        if method == "CONNECT":
            try:
                host, port_text = split_host_port(target)
                return cls(method, host, parse_port(port_text or ""), None)
            except ValueError as e:
                raise _BadRequest(f"CONNECT needs host:port (got {target!r}): {e}") from e
        url = urlsplit(target)
        scheme = url.scheme.lower()
        if scheme == "https":
            raise _BadRequest("ask for https:// URLs with CONNECT")
        if scheme != "http" or not url.hostname:
            raise _BadRequest(
                f"this is an HTTP proxy: ask for an absolute http:// URL (got {target!r})"
            )
        try:
            port = url.port or 80
        except ValueError as e:
            raise _BadRequest(f"a bad port in {target!r}") from e
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        kept = [f"{method} {path} {version}"]
        upgrade = has_host = False
        for field in fields.decode("latin-1").split("\r\n") if fields else []:
            name, colon, value = field.partition(":")
            if not colon or not name or name != name.strip():
                raise _BadRequest(f"a malformed header field: {field[:100]!r}")
            lowered = name.lower()
            has_host = has_host or lowered == "host"
            if lowered in ("connection", "proxy-connection"):
                upgrade = upgrade or "upgrade" in value.lower()
            if lowered not in DROPPED_FIELDS:
                kept.append(field)
        if not has_host:
            kept.append(f"Host: {url.netloc.rpartition('@')[2]}")
        kept.append("Connection: upgrade" if upgrade else "Connection: close")
        head = ("\r\n".join(kept) + "\r\n\r\n").encode("latin-1")
        return cls(method, url.hostname, port, head)


class _BadRequest(Exception):
    pass


class _HeadTooLarge(Exception):
    pass


def _why(error: BaseException) -> str:
    return (error.strerror if isinstance(error, OSError) else None) or str(error) or repr(error)


async def _read_head(channel: Channel) -> tuple[bytes, bytes] | None:
    """The request head (through its blank line) and what came after it; None if the client
    ended before a whole head."""
    buffer = bytearray()
    while (end := buffer.find(b"\r\n\r\n")) < 0:
        if len(buffer) > HEAD_LIMIT:
            raise _HeadTooLarge
        chunk = await channel.receive()
        if not chunk:
            return None
        buffer += chunk
    if end + 4 > HEAD_LIMIT:
        raise _HeadTooLarge
    return bytes(buffer[: end + 4]), bytes(buffer[end + 4 :])


async def _answer(channel: Channel, status: int, reason: str) -> None:
    """Our own answer: `reason` on one line. The client has ANSWER_TIMEOUT to close its side;
    the connection is then dropped."""
    body = f"{reason}\n".encode()
    head = (
        f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    await channel.send(head.encode("latin-1") + body)
    await channel.send_eof()
    with anyio.move_on_after(ANSWER_TIMEOUT):
        while await channel.receive():
            pass


async def _resolve(host: str, port: int) -> list[IPAddress]:
    literal = address_of(host)
    if literal is not None:
        return [literal]
    with anyio.fail_after(RESOLVE_TIMEOUT):
        found = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[IPAddress] = []
    for *_, sockaddr in found:
        address = plain(ipaddress.ip_address(sockaddr[0]))
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise OSError(f"{host} has no address")
    return addresses


async def _connect(
    addresses: list[IPAddress], port: int
) -> tuple[anyio.abc.SocketStream, IPAddress]:
    """A connection to the first of `addresses` that answers (all within CONNECT_TIMEOUT)."""
    errors: list[str] = []
    with anyio.fail_after(CONNECT_TIMEOUT):
        for address in addresses:
            try:
                return await anyio.connect_tcp(str(address), port), address
            except OSError as e:
                errors.append(f"{address}: {_why(e)}" if len(addresses) > 1 else _why(e))
    raise OSError("; ".join(errors))


async def _pipe(channel: Channel, upstream: anyio.abc.SocketStream, first: bytes) -> None:
    """Both ways until each has ended; a reset either way drops the connection."""
    async with anyio.create_task_group() as pumps:

        async def outward() -> None:
            try:
                if first:
                    await upstream.send(first)
                while data := await channel.receive():
                    await upstream.send(data)
                await upstream.send_eof()
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pumps.cancel_scope.cancel()

        pumps.start_soon(outward)
        try:
            async for data in upstream:
                await channel.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pumps.cancel_scope.cancel()
            return
        await channel.send_eof()
