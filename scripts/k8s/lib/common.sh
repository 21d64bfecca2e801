# Shared settings and helpers of scripts/k8s/cluster.sh (sourced, not run).
#
# Two places hold everything the cluster uses:
#   CACHE  (~/.cache/rayfine/k8s): built binaries, extracted Debian packages, the
#          pause image, registry storage, node image stores. Kept between runs.
#   WORK   (/tmp/rayfine-k8s): certificates, kubeconfigs, etcd data, logs, pids,
#          per-node runtime state. Removed by `down`.
# Outside those, `up` creates only: the network namespaces k8s-fab, k8s-n1,
# k8s-n2 (their veths, bridge and two host routes vanish with them), the empty
# mountpoint /var/lib/kubelet (the kubelet hard-codes a path below it) and the
# registry's CA for the host's Docker engine in /etc/docker/certs.d/ADDR/ca.crt.
# `down` removes each of them, and only if `up` recorded creating it.

CACHE="${RAYFINE_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rayfine/k8s}"
WORK="${RAYFINE_K8S_WORK:-/tmp/rayfine-k8s}"
NODES=(n1 n2)
FAB=k8s-fab                     # the router namespace: etcd, control plane, registry
HOST_IF=k8s-h                   # host end of the veth to the router
HOST_ADDR=10.77.0.1             # the host's address on that veth
FAB_ADDR=10.77.0.2              # the router's: API server and registry listen here
BRIDGE_NET=10.77.1              # node addresses: .11, .12; the router is .1
POD_NET=10.244                  # pods of node nI: 10.244.I.0/24
API_PORT=6443
REGISTRY="$FAB_ADDR:5000"
DOCKER_CERTS_DIR="/etc/docker/certs.d/$REGISTRY"
SYSCTLS=(kernel.panic kernel.panic_on_oops vm.overcommit_memory vm.panic_on_oom
         kernel.keys.root_maxkeys kernel.keys.root_maxbytes)

log() { printf '[k8s] %s\n' "$*" >&2; }
die() { printf '[k8s] error: %s\n' "$*" >&2; exit 1; }

T0=$(date +%s.%N)
elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
step() { log "$(elapsed)s $*"; }

# run a command inside the router namespace / a node's namespaces
in_fab() { nsenter --net="/run/netns/$FAB" "$@"; }
holder_pid() { cat "$WORK/$1/holder.pid" 2>/dev/null || true; }
in_node() {  # in_node NODE CMD...: the node's network AND mount namespace (dockerd, kubelet)
    local node="$1"; shift
    nsenter -t "$(holder_pid "$node")" -m -n "$@"
}

# background a long-running service, recording its pid; output to WORK/logs/NAME.log
spawn() {  # spawn NAME [in_fab | in_node NODE] CMD...
    local name="$1"; shift
    case "$1" in
        in_fab) shift; set -- nsenter --net="/run/netns/$FAB" "$@" ;;
        in_node) local node="$2"; shift 2; set -- nsenter -t "$(holder_pid "$node")" -m -n "$@" ;;
    esac
    mkdir -p "$WORK/logs" "$WORK/pids"
    setsid "$@" >>"$WORK/logs/$name.log" 2>&1 </dev/null &
    echo $! >"$WORK/pids/$name"
}

alive() { local pid; pid="$(cat "$WORK/pids/$1" 2>/dev/null)" && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }

stop_service() {  # stop_service NAME [SECONDS]: SIGTERM, then SIGKILL after SECONDS (default 10)
    local name="$1" wait="${2:-10}" pid i
    pid="$(cat "$WORK/pids/$name" 2>/dev/null)" || return 0
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < wait * 10; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$WORK/pids/$name"
}

wait_for() {  # wait_for SECONDS WHAT CMD...: poll CMD every 0.1 s until it succeeds
    local seconds="$1" what="$2" i; shift 2
    for ((i = 0; i < seconds * 10; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "$what did not come up within ${seconds}s (logs: $WORK/logs/)"
}

KUBECTL="$WORK/kubectl"  # the cached 1.20 kubectl, as admin, its discovery cache in WORK (not ~/.kube)
kubectl_admin() { "$KUBECTL" "$@"; }
write_kubectl() {
    printf '#!/bin/sh\nexec %s --kubeconfig %s --cache-dir %s "$@"\n' "$CACHE/x/usr/bin/kubectl" \
        "$WORK/admin.kubeconfig" "$WORK/kubectl-cache" >"$KUBECTL"
    chmod 755 "$KUBECTL"
}
