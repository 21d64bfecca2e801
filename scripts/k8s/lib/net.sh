# The cluster's network (sourced): three namespaces and nothing routed beyond them.
#
#   host  k8s-h 10.77.0.1/30 ──veth── h0 10.77.0.2  k8s-fab (router: etcd, control plane, registry)
#                                          br0 10.77.1.1/24
#                                 ├── n1 ──veth── eth0 10.77.1.11  k8s-n1 (dockerd, kubelet; pods 10.244.1.0/24)
#                                 └── n2 ──veth── eth0 10.77.1.12  k8s-n2 (pods 10.244.2.0/24)
#
# The host gets one route (pod IPs via the router), so tests reach pods directly;
# it goes away with the veth. Nothing forwards in the host namespace (its FORWARD
# policy stays as it is), and the router has no route out: the cluster is offline.

net_up() {
    ip netns add "$FAB"
    in_fab ip link set lo up
    ip link add "$HOST_IF" type veth peer name h0 netns "$FAB"
    ip addr add "$HOST_ADDR/30" dev "$HOST_IF"
    ip link set "$HOST_IF" up
    in_fab ip addr add "$FAB_ADDR/30" dev h0
    in_fab ip link set h0 up
    in_fab ip link add br0 type bridge
    in_fab ip addr add "$BRIDGE_NET.1/24" dev br0
    in_fab ip link set br0 up
    in_fab sysctl -qw net.ipv4.ip_forward=1  # namespace-local
    local i node
    for i in "${!NODES[@]}"; do
        node="${NODES[$i]}"
        ip netns add "k8s-$node"
        ip link add "$node" netns "$FAB" type veth peer name eth0 netns "k8s-$node"
        in_fab ip link set "$node" master br0 up
        nsenter --net="/run/netns/k8s-$node" sh -c "
            ip link set lo up && ip addr add $BRIDGE_NET.1$((i + 1))/24 dev eth0 &&
            ip link set eth0 up && ip route add default via $BRIDGE_NET.1 &&
            sysctl -qw net.ipv4.ip_forward=1"
        in_fab ip route add "$POD_NET.$((i + 1)).0/24" via "$BRIDGE_NET.1$((i + 1))"
    done
    ip route add "$POD_NET.0.0/16" via "$FAB_ADDR" dev "$HOST_IF"
}

net_down() {
    local ns
    for ns in "${NODES[@]}"; do ip netns del "k8s-$ns" 2>/dev/null || true; done
    ip netns del "$FAB" 2>/dev/null || true
    ip link del "$HOST_IF" 2>/dev/null || true  # normally gone with its peer already
}

net_present() { ip netns list 2>/dev/null | grep -qE "^($FAB|k8s-n[0-9]+)( |$)"; }
