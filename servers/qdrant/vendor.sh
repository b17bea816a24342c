#!/usr/bin/env bash
# Fetch on the host the wheels the qdrant image installs (requirements.txt and every dependency,
# for CPython 3.11 manylinux on this machine's arch), so the image builds offline:
#   vendor/wheels/*.whl   the Dockerfile installs them with pip --no-index
# Idempotent and quiet: does nothing when the stamp of this requirements.txt is there.
# Env: WHEELS_PYTHON_VERSION (default 3.11: the Python of cua-gateway/base:bookworm; 3.12 for
#      python:3.12-slim).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
VENDOR=$HERE/vendor
PY_VERSION=${WHEELS_PYTHON_VERSION:-3.11}

case "$(uname -m)" in
    x86_64 | amd64) ARCH=x86_64 ;;
    aarch64 | arm64) ARCH=aarch64 ;;
    *) echo "qdrant/vendor.sh: unsupported machine $(uname -m)" >&2; exit 1 ;;
esac

sum=$(sha256sum "$HERE/requirements.txt" | cut -c1-16)
STAMP=$VENDOR/.complete-$sum-cp$PY_VERSION-$ARCH
[ -e "$STAMP" ] && exit 0

if [ -x "$ROOT/.venv/bin/pip" ]; then PIP=("$ROOT/.venv/bin/pip"); else PIP=(python3 -m pip); fi

out=$(mktemp)
work=$(mktemp -d)
trap 'rm -rf "$out" "$work"' EXIT
# manylinux_2_28 for onnxruntime and numpy; manylinux2014 (glibc 2.17) for the rest.
if ! "${PIP[@]}" download --quiet --disable-pip-version-check \
    --only-binary=:all: --implementation cp --python-version "$PY_VERSION" \
    --platform "manylinux_2_28_$ARCH" --platform "manylinux2014_$ARCH" \
    --dest "$work/wheels" -r "$HERE/requirements.txt" >"$out" 2>&1; then
    echo "qdrant/vendor.sh: pip download failed:" >&2
    tail -n 30 "$out" >&2
    exit 1
fi
# Swap the complete set in: an interrupted run leaves no half folder behind.
rm -rf "$VENDOR"
mkdir -p "$VENDOR"
mv "$work/wheels" "$VENDOR/wheels"
touch "$STAMP"
