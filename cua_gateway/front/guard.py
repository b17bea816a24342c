"""Who may talk to the gateway over HTTP: bearer tokens, and Host/Origin checks against DNS
rebinding (pure ASGI, so streamed responses pass untouched)."""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Receive, Scope, Send

OPEN_PATHS = frozenset({"/healthz"})  # liveness probes need no token
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Policy:
    tokens: Sequence[str] = ()
    loopback_only: bool = True
    """Bound to loopback: only loopback Host and Origin headers are accepted."""
    allowed_hosts: Sequence[str] = field(default_factory=tuple)
    allowed_origins: Sequence[str] = field(default_factory=tuple)

    def host_allowed(self, host: str) -> bool:
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if host in self.allowed_hosts or name in self.allowed_hosts:
            return True
        return name in LOOPBACK_NAMES if self.loopback_only else not self.allowed_hosts

    def origin_allowed(self, origin: str) -> bool:
        if origin in self.allowed_origins:
            return True
        if self.loopback_only:
            host = origin.split("://", 1)[-1].rsplit(":", 1)[0]
            return host in LOOPBACK_NAMES
        return not self.allowed_origins

    def token_valid(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        return any(hmac.compare_digest(token.encode(), t.encode()) for t in self.tokens)


class Guard:
    def __init__(self, app: ASGIApp, policy: Policy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        if not self.policy.host_allowed(headers.get("host", "")):
            await _refuse(send, 421, "Host header not allowed")
            return
        origin = headers.get("origin")
        if origin is not None and not self.policy.origin_allowed(origin):
            await _refuse(send, 403, "Origin not allowed")
            return
        if self.policy.tokens and not self.policy.token_valid(headers.get("authorization", "")):
            await _refuse(send, 401, "missing or invalid bearer token", bearer=True)
            return
        await self.app(scope, receive, send)


async def _refuse(send: Send, status: int, message: str, *, bearer: bool = False) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if bearer:
        headers.append((b"www-authenticate", b'Bearer realm="cua-gateway"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
