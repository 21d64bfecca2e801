#!/usr/bin/env bash
# The benchmark, from a fresh machine: set everything up (like the other two
# scripts), then print Rayfine's numbers beside the same work done without it.
#
#   bash scripts/bench.sh [--quick] [--only abcdefg] [--envs N] [--width N]
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/bootstrap.sh
export RAYFINE_BASE_IMAGE="${RAYFINE_BASE_IMAGE:-rayfine/python:3.11-bookworm}"
exec .venv/bin/python bench/run.py "$@"
