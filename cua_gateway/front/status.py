"""`cua-gateway ls`: read a running gateway's `/readyz` and show it as a table."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from cua_gateway._table import table

FETCH_TIMEOUT = 5.0  # seconds to wait for a running gateway's answer


def fetch_status(url: str, token: str | None = None) -> dict[str, Any]:
    """The JSON of `/readyz` (which answers 503 while not every server is ready: still a status)."""
    if not url.startswith(("http://", "https://")):
        raise OSError(f"not an http URL: {url}")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT) as response:  # noqa: S310
            body = response.read()
    except urllib.error.HTTPError as e:
        if e.code in (401, 403, 421):
            raise OSError(f"refused ({e.code}): {e.read().decode(errors='replace')}") from e
        body = e.read()
    result: dict[str, Any] = json.loads(body)
    return result


def status_table(status: dict[str, Any]) -> str:
    rows = [("SERVER", "STATE", "READY", "TOOLS", "REPLICA", "RESTARTS", "WHERE", "LAST ERROR")]
    for name, server in status.get("servers", {}).items():
        tools = server.get("tools")
        shown_tools = "-" if tools is None else f"{tools} ({server.get('tools_source')})"
        replicas = server.get("replicas") or [{}]
        ready = sum(1 for r in replicas if r.get("state") == "healthy")
        shown_ready = f"{ready}/{len(replicas)}" if server.get("replicas") else "-"
        first = True
        for replica in replicas:
            head = (name, server["state"], shown_ready, shown_tools) if first else ("",) * 4
            error = replica.get("last_error") or (server.get("error") if first else None) or ""
            rows.append(
                (
                    *head,
                    f"#{replica['index']} {replica['state']}" if replica else "-",
                    str(replica.get("restarts", "")),
                    replica.get("where") or "",
                    error,
                )
            )
            first = False
    return table(rows)
