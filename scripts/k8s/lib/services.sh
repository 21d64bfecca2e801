# The cluster's processes (sourced): control plane and registry in the router
# namespace, a dockerd and a kubelet per node. Each runs under setsid with its pid
# in WORK/pids and its output in WORK/logs.

BIN=""  # set by cluster.sh: the cached Kubernetes binaries
PAUSE_IMAGE="rayfine-k8s.invalid/pause:1"  # never pullable: always loaded from the cache

start_etcd() {
    spawn etcd in_fab "$CACHE/x/usr/bin/etcd" --name rayfine-k8s --data-dir "$WORK/etcd" \
        --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
        --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
        --initial-cluster rayfine-k8s=http://127.0.0.1:2380 --log-level warn
    wait_for 30 etcd in_fab bash -c 'exec 3<>/dev/tcp/127.0.0.1/2379'
}

start_apiserver() {
    local pki="$WORK/pki"
    spawn kube-apiserver in_fab "$BIN/kube-apiserver" \
        --etcd-servers=http://127.0.0.1:2379 --bind-address="$FAB_ADDR" --advertise-address="$FAB_ADDR" \
        --secure-port="$API_PORT" --insecure-port=0 --cert-dir="$WORK/apiserver-certs" \
        --tls-cert-file="$pki/serving.crt" --tls-private-key-file="$pki/serving.key" \
        --client-ca-file="$pki/ca.crt" --token-auth-file="$pki/tokens.csv" \
        --authorization-mode=Node,RBAC --allow-privileged=true \
        --service-account-issuer=https://kubernetes.default.svc --service-account-key-file="$pki/sa.pub" \
        --service-account-signing-key-file="$pki/sa.key" --service-cluster-ip-range=10.96.0.0/16 \
        --kubelet-preferred-address-types=InternalIP --profiling=false --v=1
    wait_for 60 "the API server" kubectl_admin get --raw /readyz
}

start_controllers() {
    spawn kube-controller-manager in_fab "$BIN/kube-controller-manager" \
        --kubeconfig="$WORK/kcm.kubeconfig" --leader-elect=false --port=0 --bind-address=127.0.0.1 \
        --cert-dir="$WORK/kcm-certs" --service-account-private-key-file="$WORK/pki/sa.key" \
        --root-ca-file="$WORK/pki/ca.crt" --flex-volume-plugin-dir="$WORK/kcm-flex" \
        --node-monitor-period=1s --node-monitor-grace-period=8s --profiling=false --v=1
    spawn kube-scheduler in_fab "$BIN/kube-scheduler" \
        --kubeconfig="$WORK/scheduler.kubeconfig" --leader-elect=false --port=0 \
        --bind-address=127.0.0.1 --cert-dir="$WORK/scheduler-certs" --profiling=false --v=1
}

start_registry() {
    mkdir -p "$CACHE/registry"
    cat >"$WORK/registry.yml" <<YML
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $CACHE/registry}
  delete: {enabled: true}
http:
  addr: $REGISTRY
  tls: {certificate: $WORK/pki/serving.crt, key: $WORK/pki/serving.key}
YML
    spawn registry in_fab "$CACHE/x/usr/bin/docker-registry" serve "$WORK/registry.yml"
    wait_for 30 "the registry" curl -sf --cacert "$WORK/pki/ca.crt" "https://$REGISTRY/v2/"
}

# -- nodes -----------------------------------------------------------------------

start_holder() {  # a process owning the node's mount namespace: /var/log and /var/lib/kubelet are the node's own
    local node="$1" d="$WORK/$1"
    mkdir -p "$d/varlog" "$d/kubelet" "$d/exec"
    setsid nsenter --net="/run/netns/k8s-$node" unshare -m --propagation private sh -c \
        "mount --bind '$d/varlog' /var/log && mount --bind '$d/kubelet' /var/lib/kubelet && exec sleep infinity" \
        </dev/null >>"$WORK/logs/holder-$node.log" 2>&1 &
    echo $! >"$d/holder.pid"
    wait_for 10 "the $node namespace holder" sh -c "grep -q /var/lib/kubelet /proc/$!/mountinfo"
}

start_dockerd() {
    local node="$1" i="$2" d="$WORK/$1"
    mkdir -p "$CACHE/nodes/$node/docker"
    cat >"$d/daemon.json" <<JSON
{"hosts": ["unix://$d/docker.sock"], "data-root": "$CACHE/nodes/$node/docker", "exec-root": "$d/exec",
 "pidfile": "$d/docker.pid", "bip": "$POD_NET.$i.1/24", "iptables": false, "ip-masq": false,
 "userland-proxy": false, "cgroup-parent": "/rayfine-k8s-$node", "storage-driver": "overlay2",
 "insecure-registries": ["$REGISTRY"], "log-opts": {"max-size": "10m"}}
JSON
    # Under its own name: a `pkill dockerd` / `killall dockerd` aimed at the host's engine
    # (other users of this machine restart theirs) must not take the nodes down with it.
    ln -sfn "$(command -v dockerd)" "$CACHE/node-dockerd"
    spawn "dockerd-$node" in_node "$node" "$CACHE/node-dockerd" --config-file "$d/daemon.json"
    wait_for 30 "dockerd on $node" docker -H "unix://$d/docker.sock" version
}

load_pause() {  # the sandbox image into a node's engine, from the cache (made once from our binary)
    local node="$1" docker=(docker -H "unix://$WORK/$1/docker.sock")
    "${docker[@]}" image inspect "$PAUSE_IMAGE" >/dev/null 2>&1 && return 0
    if [ ! -f "$CACHE/pause/pause.tar" ]; then
        tar -C "$CACHE/pause/root" -c . |
            "${docker[@]}" import -c 'ENTRYPOINT ["/pause"]' - "$PAUSE_IMAGE" >/dev/null
        "${docker[@]}" save -o "$CACHE/pause/pause.tar" "$PAUSE_IMAGE"
    else
        "${docker[@]}" load -q -i "$CACHE/pause/pause.tar" >/dev/null
    fi
}

start_kubelet() {
    local node="$1" i="$2" d="$WORK/$1"
    cat >"$d/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $BRIDGE_NET.1$i
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
# Short node heartbeats: a lost node is NotReady within ~8 s (with the kcm's grace period).
nodeLeaseDurationSeconds: 8
nodeStatusUpdateFrequency: 2s
cgroupsPerQOS: false
enforceNodeAllocatable: []
cgroupDriver: cgroupfs
failSwapOn: false
oomScoreAdj: 0
serializeImagePulls: false
volumePluginDir: $d/volplugins
YAML
    spawn "kubelet-$node" in_node "$node" "$BIN/kubelet" --config="$d/kubelet.yaml" \
        --kubeconfig="$WORK/$node.kubeconfig" --root-dir="$d/kubelet" --cert-dir="$d/kubelet/pki" \
        --hostname-override="$node" --node-ip="$BRIDGE_NET.1$i" --container-runtime=docker \
        --docker-endpoint="unix://$d/docker.sock" --container-runtime-endpoint="unix://$d/dockershim.sock" \
        --image-service-endpoint="unix://$d/dockershim.sock" \
        --experimental-dockershim-root-directory="$d/dockershim" \
        --pod-infra-container-image="$PAUSE_IMAGE" --v=1
}

lose_node() {  # lose_node NODE: the node dies as a machine would: kubelet, then dockerd (SIGTERM)
    stop_service "kubelet-$1" 10
    stop_service "dockerd-$1" 30
}

stop_node() {  # stop_node NODE: kubelet, then every container and the node's dockerd
    local node="$1" sock="$WORK/$1/docker.sock"
    stop_service "kubelet-$node" 10
    if alive "dockerd-$node"; then
        local ids
        ids="$(docker -H "unix://$sock" ps -aq 2>/dev/null || true)"
        [ -n "$ids" ] && docker -H "unix://$sock" rm -f $ids >/dev/null 2>&1 || true
    fi
    stop_service "dockerd-$node" 30
}

start_node() {  # start_node NODE INDEX: dockerd with the pause image, then the kubelet
    start_dockerd "$1" "$2"
    load_pause "$1"
    start_kubelet "$1" "$2"
}
