#!/usr/bin/env bash
# Run the offline unit tests on the oldest and newest supported Python found here.
#
#   bash scripts/test-pythons.sh                  # pytest -m "not engine" on 3.9 and 3.13
#   PYTHONS="3.10 3.12" bash scripts/test-pythons.sh tests/test_wire.py -x
#
# Each Python gets its own venv with the workspace installed editable plus the
# dev tools, cached in ~/.cache/rayfine/venvs/ under a key made of the
# interpreter, this checkout's path and the hash of every pyproject.toml, so a
# second run starts at once and a changed pyproject gets a fresh venv.
# Interpreters come from pyenv (PYENV_ROOT, default ~/.pyenv) or PATH
# (python3.X).  Exits non-zero if any Python's run fails; prints a summary.
set -uo pipefail
# Some tests outside the `engine` marker still reach an engine; none of them may
# restart the shared docker/podman service from here.
export RAYFINE_SKIP_ENGINE_RESTART=1

cd "$(dirname "$0")/.."
REPO="$(pwd)"
CACHE="${RAYFINE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/rayfine}/venvs"
PYTHONS="${PYTHONS:-3.9 3.13}"
MEMBERS=(rayfine_core rayfine_docker rayfine_podman rayfine_kubernetes rayfine_remote rayfine_server examples/rayfine-example-runtime)
DEV_TOOLS=(pytest pytest-timeout hypothesis httpx h11 hatchling "packaging>=26.3; python_version >= '3.10'")
PYTEST_ARGS=("$@")
[ ${#PYTEST_ARGS[@]} -gt 0 ] || PYTEST_ARGS=(-m "not engine" -q -p no:cacheprovider)

log() { echo "[test-pythons] $*" >&2; }

find_python() {  # newest patch release of $1 (e.g. 3.9) from pyenv, else python3.X on PATH
    local minor=$1 root="${PYENV_ROOT:-$HOME/.pyenv}" best=""
    for candidate in "$root"/versions/"$minor".*/bin/python3; do
        [[ -x "$candidate" && "$candidate" =~ /versions/$minor\.[0-9]+/ ]] && best="$candidate"
    done
    if [ -z "$best" ]; then best="$(command -v "python$minor" || true)"; fi
    echo "$best"
}

ensure_venv() {  # echo the venv for interpreter $1, creating it when its key changed
    local python=$1 key venv
    key="$( { "$python" -c 'import sys; print(sys.version)'; echo "$REPO"; cat pyproject.toml \
        "${MEMBERS[@]/%//pyproject.toml}"; printf '%s\n' "${DEV_TOOLS[@]}"; } | sha256sum | cut -c1-16)"
    venv="$CACHE/$("$python" -c 'import sys; print("py%d.%d" % sys.version_info[:2])')-$key"
    if [ ! -f "$venv/.complete" ]; then
        rm -rf "$venv"
        log "creating $venv"
        local editable=() output="$CACHE/install-$key.log"
        for member in "${MEMBERS[@]}"; do
            [ "$member" = rayfine_remote ] && member="rayfine_remote[gateway]"  # the gateway is tested
            editable+=(-e "./$member")
        done
        mkdir -p "$CACHE"
        if ! { "$python" -m venv "$venv" && "$venv/bin/python" -m pip install -q \
                --disable-pip-version-check --timeout 60 "${editable[@]}" "${DEV_TOOLS[@]}"; \
              } >"$output" 2>&1; then
            tail -20 "$output" >&2
            return 1
        fi
        rm -f "$output"
        touch "$venv/.complete"
    fi
    echo "$venv"
}

status=0
summary=()
for minor in $PYTHONS; do
    python="$(find_python "$minor")"
    if [ -z "$python" ]; then
        summary+=("Python $minor: not found (install it with pyenv)")
        status=1
        continue
    fi
    if ! venv="$(ensure_venv "$python")"; then
        summary+=("Python $minor: could not create the venv")
        status=1
        continue
    fi
    log "Python $minor ($python): pytest ${PYTEST_ARGS[*]}"
    if "$venv/bin/python" -m pytest "${PYTEST_ARGS[@]}"; then
        summary+=("Python $minor: passed")
    else
        summary+=("Python $minor: FAILED")
        status=1
    fi
done
printf '[test-pythons] %s\n' "${summary[@]}"
exit $status
