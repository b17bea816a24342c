#!/usr/bin/env bash
# Vendor this server's wheels for offline image builds (see scripts/vendor-wheels.sh).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
exec bash "$HERE/../../scripts/vendor-wheels.sh" "$HERE"
