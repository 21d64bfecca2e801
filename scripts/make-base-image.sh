#!/usr/bin/env bash
# Build the offline Python base image environments run on.
#
#   bash scripts/make-base-image.sh [--docker-only | --podman-only] [NAME]
#
# NAME defaults to rayfine/python:3.11-bookworm. No registry is reachable
# here, so the image is made from a debootstrap'ed Debian root filesystem
# (Debian's mirror is reachable) and imported into docker, and into podman
# when podman is installed. Idempotent: an image that exists is kept, and
# the root filesystem is cached in ${RAYFINE_CACHE_DIR:-~/.cache/rayfine}.
set -euo pipefail

log() { echo "[rayfine] $*"; }
die() { echo "[rayfine] error: $*" >&2; exit 1; }

NAME=rayfine/python:3.11-bookworm
use_docker=1
use_podman=1
for arg in "$@"; do
    case "$arg" in
        --docker-only) use_podman=0 ;;
        --podman-only) use_docker=0 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        -*) die "unknown option $arg" ;;
        *) NAME="$arg" ;;
    esac
done
[ "$(id -u)" = 0 ] || die "run as root (debootstrap and image import need it)"
command -v podman >/dev/null || use_podman=0

SUITE=bookworm
MIRROR="${RAYFINE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# shellcheck disable=SC2054  # the commas belong to --include
DEBOOTSTRAP_ARGS=(--variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates "$SUITE")
CACHE_DIR="${RAYFINE_CACHE_DIR:-$HOME/.cache/rayfine}"
ROOTFS="$CACHE_DIR/rootfs/$SUITE"
# Outside the rootfs so it never ends up in the image; holds the arguments
# so that changing the package list rebuilds.
MARKER="$ROOTFS.complete"

docker_has() { timeout 30 docker image inspect "$NAME" >/dev/null 2>&1; }
podman_has() { timeout 30 podman image exists "$NAME" >/dev/null 2>&1; }

if [ "$use_docker" = 1 ] && ! timeout 15 docker info >/dev/null 2>&1; then
    die "docker does not answer: run scripts/install-engines.sh first (or pass --podman-only)"
fi

need_docker=0
need_podman=0
if [ "$use_docker" = 1 ]; then
    if docker_has; then log "docker has $NAME"; else need_docker=1; fi
fi
if [ "$use_podman" = 1 ]; then
    if podman_has; then log "podman has $NAME"; else need_podman=1; fi
fi

# --- root filesystem --------------------------------------------------------

unmount_under() {
    # debootstrap mounts /proc and /sys inside the target; an interrupted run
    # leaves them mounted, and rm -rf must not walk into them.
    local dir="$1" mnt
    [ -d "$dir" ] || return 0
    findmnt -rn -o TARGET | { grep -F "$dir/" || true; } | sort -r | while read -r mnt; do
        umount -l "$mnt" || true
    done
}

build_rootfs() {
    local want
    want="${DEBOOTSTRAP_ARGS[*]} $MIRROR"
    if [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$want" ] && [ -x "$ROOTFS/usr/bin/python3" ]; then
        log "reusing root filesystem $ROOTFS"
        return 0
    fi
    command -v debootstrap >/dev/null || die "debootstrap missing: run scripts/install-engines.sh first"
    # No marker means a missing, partial (interrupted) or outdated rootfs: redo it.
    unmount_under "$ROOTFS"
    rm -rf --one-file-system "$ROOTFS" "$MARKER"
    mkdir -p "$ROOTFS"
    # --foreground keeps debootstrap in our process group, so stopping this
    # script (Ctrl-C, a CI kill) stops it too instead of orphaning it.
    log "debootstrap $SUITE into $ROOTFS (a few minutes; log: $ROOTFS.log)"
    if ! timeout --foreground 1800 debootstrap "${DEBOOTSTRAP_ARGS[@]}" "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1; then
        unmount_under "$ROOTFS"
        die "debootstrap failed; tail $ROOTFS.log"
    fi
    # Containers cannot reach a mirror, so downloaded .debs and package lists
    # are dead weight in the image.
    rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/cache/apt/*.bin \
        "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/log/*.log
    echo "$want" >"$MARKER"
    log "root filesystem ready ($(du -sh "$ROOTFS" | cut -f1))"
}

# --- import -----------------------------------------------------------------

CHANGES=(
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
    --change 'ENV LANG=C.UTF-8'
    --change 'CMD ["python3"]'
)

import_into() {  # ENGINE
    local quiet=()
    [ "$1" = podman ] && quiet=(--quiet)  # else it reports copy progress on stderr
    log "importing $NAME into $1"
    # --numeric-owner: ids must match the rootfs's own /etc/passwd, not the host's.
    tar --numeric-owner -C "$ROOTFS" -c . \
        | timeout --foreground 900 "$1" import "${quiet[@]}" "${CHANGES[@]}" - "$NAME" >/dev/null \
        || die "$1 import failed"
}

verify_in() {  # ENGINE
    local out
    out="$(timeout 120 "$1" run --rm --network none "$NAME" \
        python3 -c 'import sys; print(sys.version.split()[0])' 2>&1)" \
        || die "$1 run $NAME failed: $out"
    log "$1: $NAME runs Python $out"
}

if [ "$need_docker$need_podman" != "00" ]; then
    build_rootfs
    [ "$need_docker" = 1 ] && import_into docker
    [ "$need_podman" = 1 ] && import_into podman
fi
[ "$use_docker" = 1 ] && verify_in docker
[ "$use_podman" = 1 ] && verify_in podman
log "base image ready: $NAME"
