#!/usr/bin/env bash
# Prepare a fresh Debian/Ubuntu machine (as root) so cua-gateway runs and its tests pass.
# Idempotent: every step checks first and only does work that is missing.
#   - apt packages: docker.io redis-server debootstrap openssh-server ca-certificates
#   - Docker daemon running (recovers from a killed daemon's stale pid file / containerd)
#   - .venv with the project installed editable with its [dev] extra
#   - local base image (scripts/build-base-image.sh) when missing
#   - the desktop image of the e2b server's desktop sessions (cua-gateway/desktop:latest)
# Redis and sshd are installed but NOT started: tests start their own instances.
# Env: PYTHON (interpreter for the venv, default python3), CUA_BASE_IMAGE.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
IMAGE=${CUA_BASE_IMAGE:-cua-gateway/base:bookworm}
DOCKERD_LOG=/var/log/dockerd.log
DOCKER_PIDFILE=/var/run/docker.pid
CONTAINERD_PIDFILE=/var/run/docker/containerd/containerd.pid
export DEBIAN_FRONTEND=noninteractive

log() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }

# Run a noisy command silently; show its output only if it fails.
quiet() {
    local out rc=0
    out=$(mktemp)
    "$@" >"$out" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then
        printf 'setup: command failed (exit %s): %s\n' "$rc" "$*" >&2
        tail -n 30 "$out" >&2
        rm -f "$out"
        exit "$rc"
    fi
    rm -f "$out"
}

[ "$(id -u)" -eq 0 ] || die "must run as root"

# One setup at a time (concurrent test runs may call this).
exec 9>/var/lock/cua-gateway-setup.lock
flock -w 900 9 || die "another setup.sh holds /var/lock/cua-gateway-setup.lock (waited 15 min)"

# --- 1. apt packages ---------------------------------------------------------
pkgs=(docker.io redis-server debootstrap openssh-server ca-certificates)
# debootstrap of Debian bookworm on Ubuntu needs Debian's archive keyring.
[ -e /usr/share/keyrings/debian-archive-keyring.gpg ] || pkgs+=(debian-archive-keyring)
# A bare system python3 cannot create venvs without python3-venv.
if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1 && [ "$(command -v "$PYTHON")" = /usr/bin/python3 ]; then
    pkgs+=(python3-venv)
fi
missing=()
for p in "${pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing apt packages: ${missing[*]}"
    # Keep package scripts from starting services (redis, sshd, docker): tests
    # start their own, and a daemon started here would inherit our lock fd.
    policy=/usr/sbin/policy-rc.d
    own_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && own_policy=1
        trap 'if [ "$own_policy" -eq 1 ]; then rm -f "$policy"; fi' EXIT
    fi
    quiet apt-get update 9>&-
    quiet apt-get install -y "${missing[@]}" 9>&-
    if [ "$own_policy" -eq 1 ]; then rm -f "$policy"; own_policy=0; fi
fi

# --- 2. Docker daemon --------------------------------------------------------
command -v docker >/dev/null 2>&1 || die "docker client not found"

# `docker info` that also copes with a client whose API is newer than the
# daemon's (20.10 = API 1.41): current clients negotiate down on their own, but
# if DOCKER_API_VERSION is pinned too high the daemon refuses; then re-pin it to
# the daemon's maximum for this script and its children.
docker_ok() {
    local err
    if err=$(docker info 2>&1 >/dev/null); then return 0; fi
    if printf '%s' "$err" | grep -q 'is too new'; then
        local max
        max=$(printf '%s' "$err" | sed -n 's/.*Maximum supported API version is \([0-9.]*\).*/\1/p' | head -n1)
        if [ -n "$max" ]; then
            export DOCKER_API_VERSION=$max
            log "docker client API too new for daemon; using DOCKER_API_VERSION=$max"
            docker info >/dev/null 2>&1 && return 0
        fi
    fi
    return 1
}

pid_alive() { # exists and is not a zombie (a killed daemon may linger as <defunct>)
    [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null &&
        [ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)" != Z ]
}
pid_is() { # pid_is PID NAME: the process exists and its argv[0] basename is NAME
    pid_alive "$1" && [ "$(basename "$(tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null | head -n1)")" = "$2" ]
}

wait_docker() { # wait_docker PID: up to 60 s for the daemon to answer
    local pid=$1
    for _ in $(seq 1 60); do
        docker_ok && return 0
        if [ -n "$pid" ] && ! pid_alive "$pid"; then
            printf 'setup: ERROR: dockerd (pid %s) exited; last lines of %s:\n' "$pid" "$DOCKERD_LOG" >&2
            tail -n 20 "$DOCKERD_LOG" >&2 || true
            exit 1
        fi
        sleep 1
    done
    printf 'setup: ERROR: Docker daemon did not answer docker info within 60 s; last lines of %s:\n' "$DOCKERD_LOG" >&2
    tail -n 20 "$DOCKERD_LOG" >&2 || true
    exit 1
}

if ! docker_ok; then
    oldpid=$(cat "$DOCKER_PIDFILE" 2>/dev/null || true)
    if pid_is "$oldpid" dockerd; then
        # A daemon is running but not answering yet (still starting): wait for it.
        log "dockerd (pid $oldpid) running but not answering; waiting"
        wait_docker "$oldpid"
    else
        if [ -e "$DOCKER_PIDFILE" ]; then
            log "removing stale $DOCKER_PIDFILE (pid ${oldpid:-?} is gone)"
            rm -f "$DOCKER_PIDFILE"
        fi
        # The dead daemon's containerd would be adopted half-broken: stop it.
        cpid=$(cat "$CONTAINERD_PIDFILE" 2>/dev/null || true)
        if pid_is "$cpid" containerd; then
            log "stopping leftover containerd (pid $cpid)"
            kill "$cpid" 2>/dev/null || true
            for _ in $(seq 1 50); do pid_alive "$cpid" || break; sleep 0.1; done
            pid_alive "$cpid" && kill -9 "$cpid" 2>/dev/null || true
        fi
        pkill -9 -f '^containerd --config /var/run/docker/containerd/' 2>/dev/null || true
        rm -f "$CONTAINERD_PIDFILE"

        log "starting dockerd (log: $DOCKERD_LOG)"
        # 9>&-: the daemon must not inherit (and hold forever) our lock fd.
        setsid nohup dockerd --iptables=false --bridge=none >"$DOCKERD_LOG" 2>&1 </dev/null 9>&- &
        newpid=$!
        wait_docker "$newpid"
        log "dockerd is up (pid $newpid)"
    fi
fi

# --- 3. Python virtualenv ----------------------------------------------------
VENV=$ROOT/.venv
STAMP=$VENV/.installed-stamp
if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    quiet "$PYTHON" -m venv "$VENV"
fi
[ -f "$ROOT/pyproject.toml" ] || die "$ROOT/pyproject.toml not found"
if [ ! -e "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ]; then
    log "installing project into .venv (pip install -e .[dev])"
    "$VENV/bin/pip" install -q --disable-pip-version-check -e "${ROOT}[dev]"
    touch "$STAMP"
fi

# --- 4. local base image -----------------------------------------------------
if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
    log "base image $IMAGE missing; building it"
    CUA_BASE_IMAGE=$IMAGE bash "$ROOT/scripts/build-base-image.sh"
fi

# --- 4b. the desktop image (the e2b server's desktop sessions; Debian packages over http) ---
# Docker's layer cache makes this a no-op when servers/e2b/desktop has not changed.
DESKTOP_IMAGE=${DESKTOP_IMAGE:-cua-gateway/desktop:latest}
log "building $DESKTOP_IMAGE (cached when unchanged)"
quiet docker build --network host --build-arg "BASE_IMAGE=$IMAGE" -t "$DESKTOP_IMAGE" \
    "$ROOT/servers/e2b/desktop"

# --- 5. wheels for offline test-image builds (tests/servers/testserver) ------
bash "$ROOT/scripts/fetch-wheels.sh" "$ROOT/.cua/wheels"

# --- 6. vendored downloads for offline server-image builds -------------------
# Each servers/<name>/vendor.sh fetches, on the host, what its Dockerfile would otherwise download
# (npm packages, wheels, binaries) into servers/<name>/vendor/, so images build with no registry.
for vendor in "$ROOT"/servers/*/vendor.sh; do
    [ -e "$vendor" ] || continue
    bash "$vendor"
done

# --- 7. the MCP Inspector CLI: a real client from another codebase, for the interop tests ----
INSPECTOR_VERSION=2.12.0
if [ ! -x "$ROOT/.cua/node/node_modules/.bin/mcp-inspector" ] \
    || ! grep -q "\"version\": \"$INSPECTOR_VERSION\"" \
        "$ROOT/.cua/node/node_modules/@modelcontextprotocol/inspector/package.json" 2>/dev/null; then
    command -v npm >/dev/null 2>&1 || die "npm is needed for the MCP Inspector (install nodejs >= 20)"
    log "installing the MCP Inspector $INSPECTOR_VERSION"
    mkdir -p "$ROOT/.cua/node"
    quiet npm install --no-audit --no-fund --prefix "$ROOT/.cua/node" \
        "@modelcontextprotocol/inspector@$INSPECTOR_VERSION"
fi
