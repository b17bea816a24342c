#!/usr/bin/env bash
# Download into DEST the wheels that install mcp==2.3.0 on CPython 3.11 manylinux (this
# machine's arch), so test images build offline: tests/servers/testserver/Dockerfile
# installs from a wheels/ folder with --no-index.
# Usage: scripts/fetch-wheels.sh DEST     Idempotent: does nothing when DEST is complete.
# Env: MCP_VERSION (default 2.3.0), WHEELS_PYTHON_VERSION (default 3.11).
set -euo pipefail

[ "$#" -eq 1 ] || { echo "usage: $0 DEST" >&2; exit 2; }
DEST=$1
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MCP_VERSION=${MCP_VERSION:-2.3.0}
PY_VERSION=${WHEELS_PYTHON_VERSION:-3.11}
STAMP=$DEST/.complete-mcp-$MCP_VERSION-cp$PY_VERSION

case "$(uname -m)" in
    x86_64 | amd64) PLATFORM=manylinux2014_x86_64 ;;
    aarch64 | arm64) PLATFORM=manylinux2014_aarch64 ;;
    *) echo "fetch-wheels: unsupported machine $(uname -m)" >&2; exit 1 ;;
esac

# The stamp is written only after a successful download, so a partial run is retried.
if [ -e "$STAMP" ] && compgen -G "$DEST/mcp-$MCP_VERSION-*.whl" >/dev/null; then
    exit 0
fi

if [ -x "$ROOT/.venv/bin/pip" ]; then PIP=("$ROOT/.venv/bin/pip"); else PIP=(python3 -m pip); fi

mkdir -p "$DEST"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
if ! "${PIP[@]}" download --quiet --disable-pip-version-check \
    --only-binary=:all: --implementation cp --python-version "$PY_VERSION" \
    --platform "$PLATFORM" --dest "$DEST" "mcp==$MCP_VERSION" >"$out" 2>&1; then
    echo "fetch-wheels: pip download failed:" >&2
    tail -n 30 "$out" >&2
    exit 1
fi
touch "$STAMP"
