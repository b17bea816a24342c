"""`/healthz` (the process is alive) and `/readyz` (which servers can take calls), as JSON."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

StatusSource = Callable[[], Mapping[str, Mapping[str, Any]]]
"""Returns, per server, at least `{"ready": bool, "state": str}`."""


def health_routes(status: StatusSource) -> list[Route]:
    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> JSONResponse:
        servers = status()
        ready = [name for name, s in servers.items() if s.get("ready")]
        enabled = [name for name, s in servers.items() if s.get("state") != "disabled"]
        body = {"ready": bool(ready) or not enabled, "servers": servers}
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    return [Route("/healthz", healthz), Route("/readyz", readyz)]
