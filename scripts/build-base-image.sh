#!/usr/bin/env bash
# Build the local base image offline-of-Docker-Hub: debootstrap a minimal Debian
# bookworm (python3, venv, pip, ca-certificates) and `docker import` it.
# Skips when the image already exists, unless --force.
# Env: CUA_BASE_IMAGE (default cua-gateway/base:bookworm),
#      CUA_DEBIAN_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail

IMAGE=${CUA_BASE_IMAGE:-cua-gateway/base:bookworm}
MIRROR=${CUA_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
FORCE=0

log() { printf 'build-base-image: %s\n' "$*" >&2; }
die() { printf 'build-base-image: ERROR: %s\n' "$*" >&2; exit 1; }

for arg in "$@"; do
    case $arg in
        --force|-f) FORCE=1 ;;
        -h|--help) sed -n '2,7p' "$0"; echo "usage: $0 [--force]"; exit 0 ;;
        *) die "unknown argument: $arg (usage: $0 [--force])" ;;
    esac
done

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap)"
command -v debootstrap >/dev/null 2>&1 || die "debootstrap not installed (run scripts/setup.sh)"
docker info >/dev/null 2>&1 || die "Docker daemon not reachable (run scripts/setup.sh)"

# One build at a time.
exec 8>/var/lock/cua-gateway-base-image.lock
flock 8

old_id=$(docker image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
if [ -n "$old_id" ] && [ "$FORCE" -eq 0 ]; then
    exit 0
fi

ROOTDIR=""
cleanup() {
    [ -n "$ROOTDIR" ] && [ -d "$ROOTDIR" ] || return 0
    # A failed debootstrap can leave proc/sys mounted inside the target.
    awk -v r="$ROOTDIR/" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r |
        while read -r m; do umount -l "$m" 2>/dev/null || true; done
    rm -rf --one-file-system "$ROOTDIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ROOTDIR=$(mktemp -d /var/tmp/cua-base-rootfs.XXXXXX)

start=$(date +%s)
log "debootstrap $SUITE from $MIRROR (takes ~1 min)"
keyring=()
[ -e /usr/share/keyrings/debian-archive-keyring.gpg ] &&
    keyring=(--keyring=/usr/share/keyrings/debian-archive-keyring.gpg)
out=$(mktemp)
if ! debootstrap "${keyring[@]}" --variant=minbase \
        --include=python3,python3-venv,python3-pip,ca-certificates \
        "$SUITE" "$ROOTDIR" "$MIRROR" >"$out" 2>&1; then
    tail -n 30 "$out" >&2
    [ -f "$ROOTDIR/debootstrap/debootstrap.log" ] && tail -n 30 "$ROOTDIR/debootstrap/debootstrap.log" >&2
    rm -f "$out"
    die "debootstrap failed"
fi
rm -f "$out"

# Same apt sources as the official debian image; drop caches like it does
# (run `apt-get update` before installing anything in a derived image).
cat >"$ROOTDIR/etc/apt/sources.list" <<SRC
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb http://deb.debian.org/debian-security $SUITE-security main
SRC
rm -rf "$ROOTDIR"/var/cache/apt/archives/*.deb "$ROOTDIR"/var/cache/apt/*.bin \
       "$ROOTDIR"/var/lib/apt/lists/* "$ROOTDIR"/tmp/* "$ROOTDIR"/var/tmp/*
: >"$ROOTDIR/etc/hostname"

log "importing into $IMAGE"
tar --numeric-owner -C "$ROOTDIR" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    - "$IMAGE" >/dev/null

new_id=$(docker image inspect --format '{{.Id}}' "$IMAGE")
# --force: drop the previous image if nothing else uses it (fails harmlessly otherwise).
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
    docker image rm "$old_id" >/dev/null 2>&1 || true
fi

size=$(docker image inspect --format '{{.Size}}' "$IMAGE")
log "built $IMAGE in $(( $(date +%s) - start ))s ($(( size / 1000000 )) MB)"
