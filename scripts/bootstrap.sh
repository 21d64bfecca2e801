#!/usr/bin/env bash
# One entry point for a fresh machine (or CI): Python workspace, container
# engines, offline base image.
#
#   bash scripts/bootstrap.sh [--docker-only | --podman-only]
#
# Idempotent and safe to re-run; each step skips what is already done.
# Exports nothing: the variable to set is printed at the end.
set -euo pipefail

log() { echo "[rayfine] $*"; }
die() { echo "[rayfine] error: $*" >&2; exit 1; }

cd "$(dirname "$0")/.."
REPO="$(pwd)"
BASE_IMAGE=rayfine/python:3.11-bookworm
MEMBERS=(rayfine_core rayfine_docker rayfine_podman rayfine_kubernetes rayfine_remote rayfine_server)
# Out-of-tree distributions installed too: the third-party plugin example is
# tested (tests/test_third_party_plugin.py, conformance --rayfine-runtime example).
EXTRAS=(examples/rayfine-example-runtime)
# A member's own extras the tests need: the gateway (`rayfine serve`) is tested.
extras_of() { case "$1" in rayfine_remote) echo "[gateway]" ;; esac; }
DEV_TOOLS=(pytest pytest-timeout pytest-cov hypothesis httpx mypy ruff h11 "packaging>=26.3" hatchling)

# --- (a) .venv with the workspace installed editable -------------------------

ensure_python() {
    # Debian's python3 ships without venv/ensurepip until python3-venv is in.
    if command -v python3 >/dev/null && python3 -c 'import venv, ensurepip' 2>/dev/null; then
        return 0
    fi
    [ "$(id -u)" = 0 ] || die "python3 with venv is missing; install python3-venv (needs root)"
    log "installing python3 python3-venv"
    local apt=(timeout --foreground 1200 env DEBIAN_FRONTEND=noninteractive apt-get -y -q
               -o DPkg::Lock::Timeout=120)
    "${apt[@]}" install python3 python3-venv >/dev/null 2>&1 \
        || { "${apt[@]}" update >/dev/null 2>&1 && "${apt[@]}" install python3 python3-venv >/dev/null; } \
        || die "could not install python3-venv"
}

ensure_python
if [ ! -x .venv/bin/python ]; then
    log "creating .venv"
    python3 -m venv .venv
fi

# Members are added over time: install the ones that exist now.
editable=()
manifests=(pyproject.toml)
for member in "${MEMBERS[@]}" "${EXTRAS[@]}"; do
    if [ -f "$member/pyproject.toml" ]; then
        editable+=(-e "./$member$(extras_of "$member")")
        manifests+=("$member/pyproject.toml")
    fi
done
# Skip pip when no manifest changed since the last successful install
# (editable installs pick up source edits by themselves).
stamp_file=.venv/.rayfine-installed
stamp="$(cat "${manifests[@]}" <(printf '%s\n' "${editable[@]}" "${DEV_TOOLS[@]}") | sha256sum)"
if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ]; then
    log ".venv up to date (${editable[*]:-no workspace member} ${DEV_TOOLS[*]})"
else
    log "installing into .venv: ${editable[*]:-(no workspace member yet)} ${DEV_TOOLS[*]}"
    timeout --foreground 1200 .venv/bin/python -m pip install -q --timeout 60 \
        "${editable[@]}" "${DEV_TOOLS[@]}" || die "pip install failed"
    echo "$stamp" >"$stamp_file"
fi

# --- (b) engines, (c) base image ---------------------------------------------

bash "$REPO/scripts/install-engines.sh" "$@"
bash "$REPO/scripts/install-gvisor.sh"  # isolation="gvisor": runsc for docker and podman
bash "$REPO/scripts/make-base-image.sh" "$@" "$BASE_IMAGE"

# The wheels every function-based image gets, downloaded once on the host (cached).
.venv/bin/python -c "from rayfine_core.build.wheelhouse import ensure_wheels; ensure_wheels(print)" \
    || die "could not download the server's wheels (see above)"

log "done. Environments run on the base image; to pick it explicitly:"
echo "RAYFINE_BASE_IMAGE=$BASE_IMAGE"
