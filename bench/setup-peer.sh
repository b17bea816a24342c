#!/usr/bin/env bash
# The benchmark's peer baseline lives in its own virtualenv: FastMCP 4 (and its mcp).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=$ROOT/.cua/bench-venv
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c 'import fastmcp' 2>/dev/null || "$VENV/bin/pip" install -q 'fastmcp>=4,<5'
