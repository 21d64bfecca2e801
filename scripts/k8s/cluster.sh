#!/usr/bin/env bash
# A real two-node Kubernetes 1.20 on this machine, offline, for the kubernetes runtime's tests.
#
#   bash scripts/k8s/cluster.sh up        # idempotent; prints timings; builds once into the cache
#   bash scripts/k8s/cluster.sh down      # removes everything up made (works after a half-failed up)
#   bash scripts/k8s/cluster.sh status    # what runs, node readiness; exit 1 if not up
#   bash scripts/k8s/cluster.sh env       # shell exports for clients: eval "$(... env)"
#   bash scripts/k8s/cluster.sh build     # only fill the cache (binaries, tools, pause)
#   bash scripts/k8s/cluster.sh node-stop n1 | node-start n1   # lose / restore a node
#
# Kubernetes is built from Debian bookworm's source package with Debian's Go
# (see lib/cache.sh); etcd, the control plane and a TLS registry run in the
# router namespace k8s-fab; each node (k8s-n1, k8s-n2) is a network + mount
# namespace with its own dockerd and kubelet. See lib/common.sh for what is
# created where, and tests/kubernetes/README.md for how the tests use it.
set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "$0")" && pwd)"
. "$SCRIPT_DIR/lib/common.sh"
. "$SCRIPT_DIR/lib/cache.sh"
[ "$(id -u)" = 0 ] || die "run as root (network namespaces, mounts, dockerd)"

case "${1:-}" in
    build) ensure_binaries; ensure_pause; step "cache ready: $(bin_dir)" ;;
    *) sed -n '2,10p' "$0" >&2; exit 2 ;;
esac
