"""The peer baseline: FastMCP 4's proxy in front of the same test server.

Runs in its own virtualenv (bench/setup-peer.sh makes .cua/bench-venv):
    .cua/bench-venv/bin/python bench/fastmcp_proxy.py SERVER_PYTHON SERVER_SCRIPT stdio
    .cua/bench-venv/bin/python bench/fastmcp_proxy.py SERVER_PYTHON SERVER_SCRIPT http PORT
"""

from __future__ import annotations

import sys

from fastmcp.server import create_proxy


def main() -> None:
    python, script, transport, *rest = sys.argv[1:]
    config = {"mcpServers": {"bench": {"command": python, "args": [script]}}}
    proxy = create_proxy(config, name="fastmcp-proxy")
    if transport == "stdio":
        proxy.run(show_banner=False)
    else:
        proxy.run(
            transport="http",
            host="127.0.0.1",
            port=int(rest[0]),
            show_banner=False,
            log_level="WARNING",
        )


if __name__ == "__main__":
    main()
