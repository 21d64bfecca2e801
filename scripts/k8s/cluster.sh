#!/usr/bin/env bash
# A real two-node Kubernetes 1.20 on this machine, offline, for the kubernetes runtime's tests.
#
#   bash scripts/k8s/cluster.sh up        # idempotent; prints timings; builds once into the cache
#   bash scripts/k8s/cluster.sh down      # removes everything up made (also after a half-failed up)
#   bash scripts/k8s/cluster.sh status    # processes and nodes; exit 1 if not (fully) up
#   bash scripts/k8s/cluster.sh env       # exports for clients: eval "$(bash scripts/k8s/cluster.sh env)"
#   bash scripts/k8s/cluster.sh build     # only fill the cache (binaries, tools, pause)
#   bash scripts/k8s/cluster.sh node-stop n1 | node-start n1   # lose / bring back a node
#
# Kubernetes is built from Debian bookworm's source package with Debian's Go
# (lib/cache.sh); etcd, the control plane and a TLS registry run in the router
# namespace k8s-fab; each node (k8s-n1, k8s-n2) is a network + mount namespace
# with its own dockerd and kubelet (lib/net.sh, lib/services.sh). lib/common.sh
# says what is created where; `down` removes it and checks the host's sysctls.
set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "$0")" && pwd)"
. "$SCRIPT_DIR/lib/common.sh"
. "$SCRIPT_DIR/lib/cache.sh"
. "$SCRIPT_DIR/lib/pki.sh"
. "$SCRIPT_DIR/lib/net.sh"
. "$SCRIPT_DIR/lib/services.sh"
[ "$(id -u)" = 0 ] || die "run as root (network namespaces, mounts, dockerd)"
SERVICES=(kube-scheduler kube-controller-manager kube-apiserver registry etcd)

record() { echo "$*" >>"$WORK/created"; }  # something made outside CACHE and WORK, for `down`

up() {
    if status >/dev/null 2>&1; then
        step "already up"; print_env; return 0
    fi
    if [ -d "$WORK" ] || net_present; then
        step "a previous cluster is (partly) there: taking it down first"
        down
    fi
    ensure_binaries
    ensure_pause
    BIN="$(bin_dir)"
    mkdir -p "$WORK/logs" "$WORK/pids"
    chmod 700 "$WORK"
    : >"$WORK/created"
    for key in "${SYSCTLS[@]}"; do echo "$key=$(sysctl -n "$key")"; done >"$WORK/sysctls"
    step "cache ready"
    make_pki
    write_kubectl
    step "certificates and tokens"
    net_up
    step "network namespaces"
    [ -d /var/lib/kubelet ] || { mkdir -p /var/lib/kubelet && record "dir /var/lib/kubelet"; }
    start_etcd
    step "etcd up"
    start_apiserver
    step "API server up"
    start_controllers
    start_registry
    install_registry_ca
    step "controllers, scheduler, registry up"
    local i
    for i in "${!NODES[@]}"; do
        start_holder "${NODES[$i]}"
        start_node "${NODES[$i]}" "$((i + 1))"
    done
    step "dockerds and kubelets started"
    wait_for 90 "both nodes Ready" nodes_ready
    wait_for 60 "the default service account" kubectl_admin get serviceaccount default
    step "both nodes Ready: cluster up in $(elapsed)s"
    print_env
}

install_registry_ca() {  # the host's Docker engine pushes to the registry over TLS it must trust
    local dir="$DOCKER_CERTS_DIR" parent
    for parent in /etc/docker /etc/docker/certs.d "$dir"; do
        [ -d "$parent" ] || { mkdir -p "$parent" && record "dir $parent"; }
    done
    cp "$WORK/pki/ca.crt" "$dir/ca.crt" && record "file $dir/ca.crt"
}

nodes_ready() {
    [ "$(kubectl_admin get nodes --no-headers 2>/dev/null | awk '$2 == "Ready"' | wc -l)" = "${#NODES[@]}" ]
}

down() {  # best effort: every step runs even if an earlier one failed
    set +e
    local node ns
    for node in "${NODES[@]}"; do
        [ -d "$WORK/$node" ] && stop_node "$node"
        local holder; holder="$(holder_pid "$node")"
        [ -n "$holder" ] && kill "$holder" 2>/dev/null || true
    done
    for ns in "${SERVICES[@]}"; do stop_service "$ns" 10; done
    net_down
    cleanup_cgroups
    if [ -f "$WORK/created" ]; then  # newest first: files before their directories
        tac "$WORK/created" | while read -r kind target; do
            case "$kind" in
                file) rm -f "$target" ;;
                dir) rmdir "$target" 2>/dev/null || log "left $target: not empty" ;;
            esac
        done
    fi
    check_sysctls
    rm -rf "$WORK"
    step "down"
    set -e
}

cleanup_cgroups() {  # the nodes' dockerds put containers under /rayfine-k8s-NODE in every hierarchy
    local node dir
    for node in "${NODES[@]}"; do
        for dir in /sys/fs/cgroup/*/"rayfine-k8s-$node"; do
            [ -d "$dir" ] || continue
            find "$dir" -depth -type d -exec rmdir {} \; 2>/dev/null || log "cgroup $dir still busy"
        done
    done
}

check_sysctls() {  # the kubelet is patched not to change these; put back any that changed anyway
    [ -f "$WORK/sysctls" ] || return 0
    local line key value now
    while IFS= read -r line; do
        key="${line%%=*}" value="${line#*=}"
        now="$(sysctl -n "$key")"
        if [ "$now" != "$value" ]; then
            log "WARNING: $key changed from $value to $now while the cluster ran; restoring it"
            sysctl -qw "$key=$value"
        fi
    done <"$WORK/sysctls"
}

status() {
    local ok=0 name node
    [ -d "$WORK" ] || { echo "down"; return 1; }
    for name in "${SERVICES[@]}"; do
        alive "$name" && echo "$name: running" || { echo "$name: NOT running"; ok=1; }
    done
    for node in "${NODES[@]}"; do
        for name in "dockerd-$node" "kubelet-$node"; do
            alive "$name" && echo "$name: running" || { echo "$name: NOT running"; ok=1; }
        done
    done
    kubectl_admin get nodes -o wide 2>/dev/null || ok=1
    nodes_ready || ok=1
    return "$ok"
}

print_env() {
    cat <<ENV
export KUBECONFIG=$WORK/admin.kubeconfig
export RAYFINE_K8S_NAMESPACE=default
export RAYFINE_K8S_REGISTRY=$REGISTRY/rayfine
export RAYFINE_K8S_KUBECTL=$KUBECTL
ENV
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    env) [ -f "$WORK/admin.kubeconfig" ] || die "the cluster is not up"; print_env ;;
    build) ensure_binaries; ensure_pause; step "cache ready: $(bin_dir)" ;;
    node-stop) [ -n "${2:-}" ] || die "which node?"; lose_node "$2"; step "$2 stopped" ;;
    node-start)
        [ -n "${2:-}" ] || die "which node?"
        BIN="$(bin_dir)"
        for i in "${!NODES[@]}"; do [ "${NODES[$i]}" = "$2" ] && start_node "$2" "$((i + 1))"; done
        step "$2 started" ;;
    *) sed -n '2,9p' "$0" >&2; exit 2 ;;
esac
