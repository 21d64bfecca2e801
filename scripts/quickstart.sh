#!/usr/bin/env bash
# The main job, from a fresh machine: set everything up, build the affine
# example environment, evaluate it in a container, print the result.
#
#   bash scripts/quickstart.sh [RUNTIME]      # RUNTIME: docker (default) or podman
set -euo pipefail
cd "$(dirname "$0")/.."
runtime="${1:-docker}"

bash scripts/bootstrap.sh
export RAYFINE_BASE_IMAGE="${RAYFINE_BASE_IMAGE:-rayfine/python:3.11-bookworm}"
.venv/bin/python examples/build_image.py "$runtime"
.venv/bin/python examples/evaluate.py "$runtime"
