#!/usr/bin/env bash
# The whole test suite, from a fresh machine: set everything up, run the unit
# and server tests, then the runtime conformance suite against every runtime,
# then check that no Rayfine container was left behind.
#
#   bash scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/bootstrap.sh
export RAYFINE_BASE_IMAGE="${RAYFINE_BASE_IMAGE:-rayfine/python:3.11-bookworm}"
reports="$(mktemp -d)"
status=0

run() {  # run NAME PYTEST-ARGS...: one pytest session, recorded for the summary
    local name="$1"; shift
    echo "[rayfine] === $name ==="
    .venv/bin/pytest -q -p no:cacheprovider --junitxml="$reports/$name.xml" "$@" || status=1
}

echo "[rayfine] === types (mypy) ==="
.venv/bin/mypy rayfine_core/src rayfine_docker/src rayfine_podman/src rayfine_server/src || status=1
run unit tests rayfine_server/tests "$@"
for runtime in docker podman example; do
    run "conformance-$runtime" --pyargs rayfine_core.testing --rayfine-runtime "$runtime" "$@"
done
# The unit run covered these on docker; the same fault and bad-input tests on podman.
run faults-podman tests/test_faults.py tests/test_bad_input.py --rayfine-runtime podman "$@"

leaks="$(docker ps -aq --filter label=rayfine.owner=rayfine; podman ps -aq --filter label=rayfine.owner=rayfine)"
if [ -n "$leaks" ]; then
    echo "[rayfine] LEAK: containers left behind:"; docker ps -a --filter label=rayfine.owner=rayfine
    podman ps -a --filter label=rayfine.owner=rayfine; status=1
else
    echo "[rayfine] no Rayfine container left in docker or podman"
fi
.venv/bin/python scripts/summarize_junit.py "$reports"/*.xml || status=1
exit "$status"
