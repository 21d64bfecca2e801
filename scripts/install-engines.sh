#!/usr/bin/env bash
# Install and start the container engines Rayfine runs environments in.
#
#   bash scripts/install-engines.sh [--docker-only | --podman-only]
#
# Idempotent: packages already installed, a config already in place and a
# daemon that already answers are left alone. Needs root (apt, dockerd).
# Built for a Debian bookworm machine without systemd, where nothing starts
# daemons for us: dockerd and the podman API service run in the background
# and log to /var/log/rayfine-*.log.
set -euo pipefail

log() { echo "[rayfine] $*"; }
die() { echo "[rayfine] error: $*" >&2; exit 1; }

want_docker=1
want_podman=1
for arg in "$@"; do
    case "$arg" in
        --docker-only) want_podman=0 ;;
        --podman-only) want_docker=0 ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) die "unknown argument $arg (expected --docker-only or --podman-only)" ;;
    esac
done
[ "$want_docker$want_podman" != "00" ] || die "--docker-only and --podman-only exclude each other"
[ "$(id -u)" = 0 ] || die "run as root (installs packages and starts daemons)"

PODMAN_SOCK=/run/podman/podman.sock
CONTAINERS_CONF="${RAYFINE_CONTAINERS_CONF:-/etc/containers/containers.conf}"  # override for tests

# --- packages ---------------------------------------------------------------

is_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

apt_install() {
    # CI has no stdin: never let apt or debconf ask anything.
    local apt=(timeout --foreground 1200 env DEBIAN_FRONTEND=noninteractive apt-get -y -q
               -o DPkg::Lock::Timeout=120 -o Acquire::http::Timeout=30)
    # Skip `apt-get update` when the lists already know the packages: it is
    # the slow, network-bound part, and a fresh machine's lists may be empty.
    if ! "${apt[@]}" install --no-install-recommends "$@" >/tmp/rayfine-apt.log 2>&1; then
        log "apt-get update (package lists missing or stale)"
        "${apt[@]}" update >>/tmp/rayfine-apt.log 2>&1 || die "apt-get update failed, see /tmp/rayfine-apt.log"
        "${apt[@]}" install --no-install-recommends "$@" >>/tmp/rayfine-apt.log 2>&1 \
            || die "apt-get install $* failed, see /tmp/rayfine-apt.log"
    fi
}

packages=(runc debootstrap)
[ "$want_docker" = 1 ] && packages+=(docker.io)
[ "$want_podman" = 1 ] && packages+=(podman uidmap)
missing=()
for pkg in "${packages[@]}"; do is_installed "$pkg" || missing+=("$pkg"); done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    apt_install "${missing[@]}"
else
    log "packages present: ${packages[*]}"
fi

# --- podman config ----------------------------------------------------------

# Root here lacks CAP_SYS_RESOURCE, so podman's default ulimits cannot be
# applied, and crun fails on hybrid cgroups: pin ulimits and use runc.
# Only keys that are absent are added, so a hand-written file keeps its values.
ensure_conf_key() {  # SECTION KEY LINE
    local section="$1" key="$2" line="$3" have tmp
    # The key's line inside [SECTION], spaces removed (empty if absent).
    have="$(awk -v s="[$section]" -v k="$key" '
        /^[[:space:]]*\[/ { cur = $0; gsub(/[[:space:]]/, "", cur); next }
        cur == s && $0 ~ "^[[:space:]]*" k "[[:space:]]*=" { gsub(/[[:space:]]/, ""); print; exit }
        ' "$CONTAINERS_CONF")"
    if [ -n "$have" ]; then
        [ "$have" = "${line//[[:space:]]/}" ] \
            || log "warning: $CONTAINERS_CONF sets its own [$section] $key; keeping it (Rayfine wants: $line)"
        return 0
    fi
    tmp="$(mktemp)"
    # Insert right after the section header, or append the section at the end.
    awk -v s="[$section]" -v l="$line" '
        { print }
        { h = $0; gsub(/[[:space:]]/, "", h) }
        h == s && !done { print l; done = 1 }
        END { if (!done) { print ""; print s; print l } }' "$CONTAINERS_CONF" >"$tmp"
    cat "$tmp" >"$CONTAINERS_CONF"  # keep the file's owner and mode
    rm -f "$tmp"
    log "added [$section] $key to $CONTAINERS_CONF"
}

if [ "$want_podman" = 1 ]; then
    mkdir -p "$(dirname "$CONTAINERS_CONF")"
    if [ ! -e "$CONTAINERS_CONF" ]; then
        cat >"$CONTAINERS_CONF" <<'EOF'
# Written by Rayfine's scripts/install-engines.sh.
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]

[engine]
runtime = "runc"
EOF
        log "wrote $CONTAINERS_CONF"
    else
        ensure_conf_key containers default_ulimits 'default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]'
        ensure_conf_key engine runtime 'runtime = "runc"'
    fi
fi

# --- daemons ----------------------------------------------------------------

wait_for() {  # SECONDS WHAT COMMAND...
    local limit="$1" what="$2"; shift 2
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 1
    done
    log "$what is up"
}

docker_ok() { timeout 15 docker info >/dev/null 2>&1; }

start_dockerd() {
    # systemd socket activation or a hand-started dockerd both answer here.
    if docker_ok; then log "dockerd already running"; return 0; fi
    # A dockerd still shutting down holds its pid file: let it finish first.
    local i
    for i in $(seq 60); do
        [ -f /var/run/docker.pid ] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null || break
        [ "$i" = 1 ] && log "waiting for a stopping dockerd to exit"
        sleep 1
    done
    # A dockerd killed uncleanly leaves a pid file that makes the next refuse to start.
    if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
        rm -f /var/run/docker.pid
    fi
    log "starting dockerd (log: /var/log/rayfine-dockerd.log)"
    # setsid + closed stdio + cwd /: the daemon outlives this script, never
    # holds a caller's pipe open, and never lives in a directory that may be
    # deleted (a checkout): conmon, podman's child, fails once its cwd is gone.
    (cd / && exec setsid dockerd >>/var/log/rayfine-dockerd.log 2>&1 </dev/null) &
    wait_for 60 dockerd docker_ok \
        || die "dockerd did not answer within 60 s; tail /var/log/rayfine-dockerd.log"
}

podman_ok() {
    if command -v curl >/dev/null; then
        curl -sf --max-time 5 --unix-socket "$PODMAN_SOCK" http://d/_ping >/dev/null 2>&1
    else
        timeout 10 podman --remote --url "unix://$PODMAN_SOCK" info >/dev/null 2>&1
    fi
}

start_podman_service() {
    if podman_ok; then log "podman service already answering on $PODMAN_SOCK"; return 0; fi
    mkdir -p "$(dirname "$PODMAN_SOCK")"
    rm -f "$PODMAN_SOCK"  # stale socket from a dead service: nothing answers on it
    log "starting podman system service on $PODMAN_SOCK (log: /var/log/rayfine-podman.log)"
    (cd / && exec setsid podman system service --time=0 "unix://$PODMAN_SOCK" \
        >>/var/log/rayfine-podman.log 2>&1 </dev/null) &
    wait_for 30 "podman service" podman_ok \
        || die "podman service did not answer within 30 s; tail /var/log/rayfine-podman.log"
}

[ "$want_docker" = 1 ] && start_dockerd
[ "$want_podman" = 1 ] && start_podman_service
log "engines ready"
