#!/usr/bin/env bash
# The whole test suite, from a fresh machine: set everything up, check style
# and types, run the offline tests (no engine), then the engine tests and the
# runtime conformance suite against every runtime, then check that no
# Rayfine container was left behind.
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

echo "[rayfine] === style (ruff format, ruff check) and types (mypy) ==="
.venv/bin/ruff format --check --quiet . || { echo "[rayfine] run: .venv/bin/ruff format ."; status=1; }
.venv/bin/ruff check --quiet . || status=1
.venv/bin/mypy rayfine_core/src rayfine_docker/src rayfine_podman/src rayfine_kubernetes/src \
    rayfine_remote/src rayfine_server/src || status=1

# Offline: no engine may be touched (tests/conftest.py refuses it); coverage of the core's life.
# (-p no:rayfine: the conformance plugin is not needed here, and loading it before coverage
# starts would hide the core's import-time lines from the report.)
run offline -m "not engine" -p no:rayfine tests \
    --cov=rayfine_core.environment --cov-report=term --cov-fail-under=85 "$@"
run server -p no:rayfine rayfine_server/tests "$@"  # in process; a tracer would skew its timeouts
run remote -p no:rayfine rayfine_remote/tests "$@"  # the gateway in process, on the process runtime
# The oldest and newest supported Pythons (3.9 and 3.13), each in its own cached venv.
echo "[rayfine] === offline on Python 3.9 and 3.13 ==="
bash scripts/test-pythons.sh -m "not engine" -q -p no:cacheprovider -p no:rayfine \
    tests rayfine_server/tests "$@" || status=1
run engine-docker -m "engine and not kubernetes" tests --rayfine-runtime docker "$@"
for runtime in docker podman example process; do
    run "conformance-$runtime" --pyargs rayfine_core.testing --rayfine-runtime "$runtime" "$@"
done
for runtime in docker podman; do  # the same suite with every container under gVisor
    run "conformance-$runtime-gvisor" --pyargs rayfine_core.testing --rayfine-runtime "$runtime" \
        --rayfine-isolation gvisor "$@"
done
# Remote mode: the conformance suite through a gateway backed by docker.
echo "[rayfine] === conformance-remote ==="
.venv/bin/python rayfine_remote/tests/run_conformance.py --backing docker \
    --junitxml="$reports/conformance-remote.xml" || status=1
# The engine run covered these on docker; the same fault and bad-input tests on podman.
run engine-podman tests/engine/test_faults.py tests/engine/test_bad_input.py --rayfine-runtime podman "$@"

# A real two-node Kubernetes (offline, from Debian's sources; binaries cached in
# ~/.cache/rayfine/k8s), its tests and the conformance suite on it, then torn down.
if bash scripts/k8s/cluster.sh up; then
    run kubernetes -m kubernetes tests/kubernetes "$@"
    eval "$(bash scripts/k8s/cluster.sh env)"
    for _ in $(seq 60); do  # deleted pods take their termination grace to go
        k8s_left="$("$RAYFINE_K8S_KUBECTL" get jobs,pods,secrets -A -l rayfine.owner=rayfine -o name 2>&1)"
        [ -n "$k8s_left" ] || break
        sleep 1
    done
    [ -z "$k8s_left" ] || { echo "[rayfine] LEAK on Kubernetes: $k8s_left"; status=1; }
else
    echo "[rayfine] the Kubernetes test cluster did not come up"; status=1
fi
bash scripts/k8s/cluster.sh down || status=1

leaks="$(docker ps -aq --filter label=rayfine.owner=rayfine; podman ps -aq --filter label=rayfine.owner=rayfine)"
if [ -n "$leaks" ]; then
    echo "[rayfine] LEAK: containers left behind:"; docker ps -a --filter label=rayfine.owner=rayfine
    podman ps -a --filter label=rayfine.owner=rayfine; status=1
else
    echo "[rayfine] no Rayfine container left in docker or podman"
fi
.venv/bin/python scripts/summarize_junit.py "$reports"/*.xml || status=1
exit "$status"
