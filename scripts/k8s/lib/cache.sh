# The cache of scripts/k8s/cluster.sh (sourced): Debian packages unpacked with
# dpkg -x (nothing is installed on the host), Kubernetes built once from
# Debian bookworm's source package, the pause image, the base image tarball.

DEBS=(golang-1.19-go golang-1.19-src etcd-server docker-registry kubernetes-client)
SRC_PKG=kubernetes
K8S_BINS=(kube-apiserver kube-controller-manager kube-scheduler kubelet)
GOROOT_DIR="$CACHE/x/usr/lib/go-1.19"

apt_private() {  # apt-get against Debian bookworm with lists and caches under CACHE/apt
    mkdir -p "$CACHE/apt/parts" "$CACHE/apt/lists/partial" "$CACHE/apt/cache/archives/partial"
    cat >"$CACHE/apt/parts/bookworm.sources" <<'SRC'
Types: deb deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    apt-get -q -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$CACHE/apt/parts" \
        -o Dir::State::Lists="$CACHE/apt/lists" -o Dir::Cache="$CACHE/apt/cache" \
        -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/nonexistent "$@"
}

apt_updated=0
apt_update_once() {
    [ "$apt_updated" = 1 ] && return 0
    step "apt-get update (private lists in $CACHE/apt)"
    apt_private update >/dev/null || die "apt-get update failed"
    apt_updated=1
}

ensure_debs() {  # download and unpack the tools into CACHE/x (once)
    [ -f "$CACHE/x/.complete" ] && return 0
    apt_update_once
    mkdir -p "$CACHE/deb" "$CACHE/x"
    step "downloading ${DEBS[*]}"
    (cd "$CACHE/deb" && apt_private download "${DEBS[@]}" >/dev/null) || die "apt-get download failed"
    for deb in "$CACHE"/deb/*.deb; do dpkg -x "$deb" "$CACHE/x"; done
    "$GOROOT_DIR/bin/go" version >/dev/null || die "unpacked Go does not run"
    touch "$CACHE/x/.complete"
}

# The three kubelet changes this machine needs (see shared notes): pause
# containers without a negative oom_score_adj (no CAP_SYS_RESOURCE here), and a
# kubelet that warns instead of changing host-wide sysctls (kernel.panic,
# vm.overcommit_memory, ...). Each edit is checked, so a changed source fails loudly.
apply_patches() {
    local src="$1"
    sed -i 's/^\(\s*defaultSandboxOOMAdj\s*int\s*=\s*\)-998$/\10/' \
        "$src/pkg/kubelet/dockershim/docker_sandbox.go"
    sed -i -e 's/^\(\s*KubeletOOMScoreAdj\s*int\s*=\s*\)-999$/\10/' \
        -e 's/^\(\s*KubeProxyOOMScoreAdj\s*int\s*=\s*\)-999$/\10/' \
        -e 's/^\(\s*guaranteedOOMScoreAdj\s*int\s*=\s*\)-997$/\10/' "$src/pkg/kubelet/qos/policy.go"
    sed -i 's/^\(\s*b := \)KernelTunableModify$/\1KernelTunableWarn/' \
        "$src/pkg/kubelet/cm/container_manager_linux.go"
    grep -Eq '^\s*defaultSandboxOOMAdj\s*int\s*=\s*0$' "$src/pkg/kubelet/dockershim/docker_sandbox.go" &&
        [ "$(grep -Ec '^\s*(KubeletOOMScoreAdj|KubeProxyOOMScoreAdj|guaranteedOOMScoreAdj)\s*int\s*=\s*0$' \
            "$src/pkg/kubelet/qos/policy.go")" = 3 ] &&
        grep -q 'b := KernelTunableWarn' "$src/pkg/kubelet/cm/container_manager_linux.go" ||
        die "a kubelet patch did not apply to $src: the source changed, update apply_patches"
}

bin_key() {  # the cache key of the built binaries: source version + patches + Go
    local version
    version="$(cat "$CACHE/src/version" 2>/dev/null)" || return 1
    printf '%s\n%s\n%s\n' "$version" "$(declare -f apply_patches)" "$(ls "$CACHE/deb")" |
        sha256sum | cut -c1-16
}
bin_dir() { echo "$CACHE/bin/$(bin_key)"; }

ensure_source() {
    [ -f "$CACHE/src/version" ] && [ -n "$(ls "$CACHE"/src/*.dsc 2>/dev/null)" ] && return 0
    apt_update_once
    mkdir -p "$CACHE/src"
    step "downloading the $SRC_PKG source package"
    (cd "$CACHE/src" && apt_private source --download-only "$SRC_PKG" >/dev/null) ||
        die "apt-get source failed"
    local dsc
    dsc="$(ls "$CACHE"/src/*.dsc | head -1)"
    sed -n 's/^Version: //p' "$dsc" >"$CACHE/src/version"
}

ensure_binaries() {  # build the four Kubernetes binaries once per key
    ensure_debs
    ensure_source
    local out
    out="$(bin_dir)"
    [ -f "$out/.complete" ] && return 0
    local build="$CACHE/build" dsc
    rm -rf "$build" && mkdir -p "$build"
    dsc="$(ls "$CACHE"/src/*.dsc | head -1)"
    step "unpacking $(basename "$dsc")"
    dpkg-source --no-check -x "$dsc" "$build/src" >/dev/null || die "dpkg-source -x failed"
    apply_patches "$build/src"
    step "building ${K8S_BINS[*]} (nice; about 6-8 minutes on 2 cores)"
    local targets=() b
    for b in "${K8S_BINS[@]}"; do targets+=("cmd/$b"); done
    # The build copies each binary with `rsync -pc SRC DIR`; cp -p does the same here.
    mkdir -p "$build/shim"
    printf '#!/bin/sh\nwhile [ "${1#-}" != "$1" ]; do shift; done\nexec cp -p "$@"\n' \
        >"$build/shim/rsync"
    chmod +x "$build/shim/rsync"
    (
        cd "$build/src"
        export GOROOT="$GOROOT_DIR" PATH="$GOROOT_DIR/bin:$build/shim:$PATH" GOCACHE="$build/gocache" \
            GOPATH="$build/gopath" GOFLAGS=-mod=vendor GO111MODULE=on GOTOOLCHAIN=local
        nice -n 10 make WHAT="${targets[*]}" >"$build/make.log" 2>&1
    ) || { tail -30 "$build/make.log" >&2; die "the Kubernetes build failed (log: $build/make.log)"; }
    mkdir -p "$out"
    for b in "${K8S_BINS[@]}"; do
        install -m 0755 "$build/src/_output/bin/$b" "$out/$b" || die "$b was not built"
    done
    touch "$out/.complete"
    rm -rf "$build"  # the source tree and Go cache (several GiB) are not needed again
    step "built into $out"
}

ensure_pause() {  # the pod sandbox binary: our own static pause program (image made per node)
    [ -x "$CACHE/pause/root/pause" ] && return 0
    ensure_debs
    local dir="$CACHE/pause"
    rm -rf "$dir" && mkdir -p "$dir/root" "$dir/src"
    cp "$SCRIPT_DIR/pause.go" "$dir/src/main.go"
    (
        cd "$dir/src"
        export GOROOT="$GOROOT_DIR" PATH="$GOROOT_DIR/bin:$PATH" GOCACHE="$dir/gocache" \
            CGO_ENABLED=0 GO111MODULE=off GOTOOLCHAIN=local
        go build -ldflags '-s -w' -o "$dir/root/pause" main.go
    ) || die "building the pause binary failed"
    rm -rf "$dir/gocache" "$dir/src"
}
