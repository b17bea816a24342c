#!/usr/bin/env bash
# scripts/vendor-wheels.sh SERVER_DIR: fetch on the host the wheels SERVER_DIR/requirements.txt
# needs, into SERVER_DIR/vendor/py<X.Y>/, so that its image builds offline (its Dockerfile installs
# from there with --no-index when it matches the image's Python).
# Idempotent and quiet: a stamp records a complete download of this requirements.txt.
# Env: VENDOR_PYTHON_VERSION (default 3.11, the Python of cua-gateway/base:bookworm).
set -euo pipefail
[ "$#" -eq 1 ] || { echo "usage: $0 SERVER_DIR" >&2; exit 2; }
HERE=$(cd "$1" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${VENDOR_PYTHON_VERSION:-3.11}
DEST=$HERE/vendor/py$PY
STAMP=$DEST/.complete-$(sha256sum "$HERE/requirements.txt" | cut -c1-16)
[ -e "$STAMP" ] && exit 0

case "$(uname -m)" in
    x86_64 | amd64) ARCH=x86_64 ;;
    aarch64 | arm64) ARCH=aarch64 ;;
    *) echo "vendor.sh: unsupported machine $(uname -m)" >&2; exit 1 ;;
esac
PLATFORMS=()
for glibc in 17 24 27 28 31 34 35 36; do PLATFORMS+=(--platform "manylinux_2_${glibc}_$ARCH"); done
if [ -x "$ROOT/.venv/bin/pip" ]; then PIP=("$ROOT/.venv/bin/pip"); else PIP=(python3 -m pip); fi

rm -rf "$DEST"
mkdir -p "$DEST"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! "${PIP[@]}" download --quiet --disable-pip-version-check --only-binary=:all: \
    --implementation cp --python-version "$PY" "${PLATFORMS[@]}" \
    --dest "$DEST" -r "$HERE/requirements.txt" >"$log" 2>&1; then
    echo "vendor.sh ($HERE): pip download failed:" >&2
    grep -v "is ignored" "$log" | tail -n 30 >&2
    exit 1
fi
touch "$STAMP"
