"""Run the qdrant MCP server over stdio (default) or streamable HTTP.

    python -m cua_qdrant                     # stdio
    python -m cua_qdrant http [--port P]     # streamable HTTP on 127.0.0.1 (--host to change)

Environment:
    QDRANT_URL          a Qdrant server (http[s]://host:port); when empty, the embedded store
    QDRANT_API_KEY      its API key, if it needs one
    QDRANT_PATH         folder of the embedded store (default /data); one process at a time
    QDRANT_COLLECTION   collection used when a tool call names none (default "documents")
    MCP_PORT            port for http (the gateway sets it)
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from cua_qdrant.embedder import Embedder
from cua_qdrant.records import StoreError
from cua_qdrant.server import build_server

if TYPE_CHECKING:
    from cua_qdrant.store import Store

EXIT_CONFIG = 78  # EX_CONFIG: the store cannot be opened as configured

logger = logging.getLogger("cua_qdrant")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cua_qdrant", description=__doc__.splitlines()[0])
    parser.add_argument("transport", nargs="?", choices=("stdio", "http"), default="stdio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("MCP_PORT", "8000")))
    return parser.parse_args(argv)


def _check_path(path: str) -> None:
    """The embedded store's folder must exist and be writable (checked before anything loads)."""
    Path(path).mkdir(parents=True, exist_ok=True)
    if not os.access(path, os.W_OK | os.X_OK):
        raise StoreError(
            f"QDRANT_PATH {path} is not writable by uid {os.getuid()}: make the host folder "
            "writable for it, or set the server's `user:` to the folder's owner"
        )


def _opener(url: str, path: str, api_key: str | None) -> Store:
    from cua_qdrant.store import Store  # noqa: PLC0415 - qdrant-client loads after `initialize`

    return Store.open(path=path, url=url, api_key=api_key)


def _fatal(message: str) -> NoReturn:
    print(f"qdrant: {message}", file=sys.stderr, flush=True)  # noqa: T201
    os._exit(EXIT_CONFIG)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(  # stderr: in stdio mode stdout carries only JSON-RPC
        stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    url = os.environ.get("QDRANT_URL", "").strip()
    path = os.environ.get("QDRANT_PATH", "/data").strip()
    if not url:
        try:
            _check_path(path)
        except (StoreError, OSError) as e:
            _fatal(str(e))
    # As PID 1's child under docker-init, SIGTERM must end us at once (writes are synchronous).
    signal.signal(signal.SIGTERM, lambda signum, _frame: os._exit(128 + signum))
    server = build_server(
        partial(_opener, url, path, os.environ.get("QDRANT_API_KEY")),
        Embedder(),
        os.environ.get("QDRANT_COLLECTION") or "documents",
        on_fatal=_fatal,
    )
    if args.transport == "http":
        server.run("streamable-http", host=args.host, port=args.port)
    else:
        server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
