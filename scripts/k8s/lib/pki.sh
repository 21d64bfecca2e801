# Certificates, tokens and kubeconfigs of the cluster (sourced). Made anew by each `up`
# (about a second of openssl), kept in WORK/pki, never outside WORK.

make_pki() {
    local pki="$WORK/pki"
    mkdir -p "$pki" && chmod 700 "$pki"
    (
        cd "$pki"
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 30 \
            -subj /CN=rayfine-k8s-ca 2>/dev/null
        # One serving certificate for the API server and the registry: both listen on FAB_ADDR.
        openssl req -newkey rsa:2048 -nodes -keyout serving.key -out serving.csr \
            -subj /CN=rayfine-k8s 2>/dev/null
        printf 'subjectAltName=IP:%s,IP:127.0.0.1,IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:localhost\n' \
            "$FAB_ADDR" >serving.ext
        openssl x509 -req -in serving.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
            -extfile serving.ext -out serving.crt 2>/dev/null
        openssl genrsa -out sa.key 2048 2>/dev/null
        openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    ) || die "openssl failed"
    # Static bearer tokens: token,user,uid,groups
    : >"$pki/tokens.csv"
    add_token admin admin system:masters
    add_token kcm system:kube-controller-manager system:masters
    add_token scheduler system:kube-scheduler ""
    local node
    for node in "${NODES[@]}"; do add_token "$node" "system:node:$node" system:nodes; done
    chmod 600 "$pki"/*.key "$pki/tokens.csv"
}

add_token() {  # add_token FILE-NAME USER GROUP: a token and a kubeconfig using it
    local name="$1" user="$2" group="$3" token
    token="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    echo "$token,$user,$user${group:+,\"$group\"}" >>"$WORK/pki/tokens.csv"
    cat >"$WORK/$name.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: rayfine-k8s
  cluster:
    server: https://$FAB_ADDR:$API_PORT
    certificate-authority: $WORK/pki/ca.crt
users:
- name: $user
  user:
    token: $token
contexts:
- name: rayfine-k8s
  context:
    cluster: rayfine-k8s
    user: $user
    namespace: default
current-context: rayfine-k8s
KC
    chmod 600 "$WORK/$name.kubeconfig"
}
