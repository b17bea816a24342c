#!/usr/bin/env bash
# The README's test command: set the machine up, then format check, lint, types, and every test.
#   bash scripts/test.sh [pytest args...]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

bash scripts/setup.sh
export PATH="$ROOT/.venv/bin:$PATH"

echo "== ruff format --check" >&2
ruff format --check cua_gateway tests servers bench
echo "== ruff check" >&2
ruff check cua_gateway tests servers bench
echo "== mypy --strict" >&2
mypy
mypy servers/*/cua_*/
echo "== images of the shipped servers" >&2
cua-gateway build -c gateway.yml   # before the tests, so no test waits for a build
echo "== pytest" >&2
# pytest exits 5 when it collects nothing: that is a failure here too.
exec pytest "$@"
