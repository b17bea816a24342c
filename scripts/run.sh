#!/usr/bin/env bash
# The README's run command: set the machine up, then run the gateway with ./gateway.yml.
#   bash scripts/run.sh [cua-gateway run args...]   e.g. --transport stdio, -c config/redis.yml
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
bash scripts/setup.sh >&2
exec "$ROOT/.venv/bin/cua-gateway" run "$@"
