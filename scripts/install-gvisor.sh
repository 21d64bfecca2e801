#!/usr/bin/env bash
# Install gVisor (runsc) and register it with Docker and Podman, for isolation="gvisor".
#
#   bash scripts/install-gvisor.sh [--docker-only | --podman-only] [--replace]
#
# Idempotent: a package already installed, a configuration already in place
# and a service that already answers are left alone. Needs root.
#
# What it does:
# * installs Debian's runsc package;
# * writes /usr/local/libexec/rayfine/runsc, a wrapper running runsc with the
#   flags Rayfine needs (below), so every engine uses the same ones;
# * Docker: adds a runtime named "runsc" to daemon.json (other keys kept) and
#   sends dockerd SIGHUP, which reloads runtimes without restarting
#   containers (dockerd is never restarted);
# * Podman: adds "runsc" to containers.conf [engine.runtimes] (for the CLI:
#   podman --runtime runsc run ...) and starts a second API service on
#   /run/podman/podman-runsc.sock whose default runtime is the wrapper.
#   Podman 4.3's API ignores a per-container runtime (containers/podman#28429),
#   so Rayfine creates gVisor containers through that service; every other
#   call (inspect, logs, stop) works through either service;
# * checks each engine with a real container: the kernel seen inside is
#   gVisor's, and Unix sockets on the mounted run dir work both ways.
#
# runsc flags: --network=none (no network device: under this VM runsc's own
# network stack fails, and egress goes through Rayfine's proxy socket),
# --host-uds=all (the container may create the server's socket AND connect to
# the egress proxy's socket on its bind mount), --platform=ptrace (KVM hangs in
# this VM; override with RAYFINE_GVISOR_PLATFORM=kvm where nested KVM works).
# --replace: overwrite an existing, different "runsc" entry in daemon.json.
set -euo pipefail

log() { echo "[rayfine] $*"; }
die() { echo "[rayfine] error: $*" >&2; exit 1; }

want_docker=1
want_podman=1
replace=0
for arg in "$@"; do
    case "$arg" in
        --docker-only) want_podman=0 ;;
        --podman-only) want_docker=0 ;;
        --replace) replace=1 ;;
        -h|--help) sed -n '2,31p' "$0"; exit 0 ;;
        *) die "unknown argument $arg (expected --docker-only, --podman-only or --replace)" ;;
    esac
done
[ "$want_docker$want_podman" != "00" ] || die "--docker-only and --podman-only exclude each other"
[ "$(id -u)" = 0 ] || die "run as root (installs a package, configures the engines)"

PLATFORM="${RAYFINE_GVISOR_PLATFORM:-ptrace}"
RUNSC=/usr/bin/runsc
WRAPPER=/usr/local/libexec/rayfine/runsc
FLAGS=(--platform="$PLATFORM" --network=none --host-uds=all)
PODMAN_SOCK="${RAYFINE_PODMAN_GVISOR_SOCKET:-/run/podman/podman-runsc.sock}"
CONTAINERS_CONF="${RAYFINE_CONTAINERS_CONF:-/etc/containers/containers.conf}"
IMAGE="${RAYFINE_BASE_IMAGE:-rayfine/python:3.11-bookworm}"

# --- package and wrapper ------------------------------------------------------

if dpkg-query -W -f='${Status}' runsc 2>/dev/null | grep -q "install ok installed"; then
    log "runsc present: $($RUNSC --version | head -1)"
else
    log "installing runsc"
    apt=(timeout --foreground 1200 env DEBIAN_FRONTEND=noninteractive apt-get -y -q
         -o DPkg::Lock::Timeout=120 -o Acquire::http::Timeout=30)
    if ! "${apt[@]}" install --no-install-recommends runsc >/tmp/rayfine-apt.log 2>&1; then
        "${apt[@]}" update >>/tmp/rayfine-apt.log 2>&1 || die "apt-get update failed, see /tmp/rayfine-apt.log"
        "${apt[@]}" install --no-install-recommends runsc >>/tmp/rayfine-apt.log 2>&1 \
            || die "apt-get install runsc failed, see /tmp/rayfine-apt.log"
    fi
fi

wrapper_text="#!/bin/sh
# Written by Rayfine's scripts/install-gvisor.sh: runsc with the flags Rayfine needs.
exec $RUNSC ${FLAGS[*]} \"\$@\""
if [ "$(cat "$WRAPPER" 2>/dev/null)" != "$wrapper_text" ]; then
    mkdir -p "$(dirname "$WRAPPER")"
    printf '%s\n' "$wrapper_text" >"$WRAPPER.tmp"
    chmod 755 "$WRAPPER.tmp"
    mv "$WRAPPER.tmp" "$WRAPPER"
    log "wrote $WRAPPER"
fi

# --- checks with a real container ---------------------------------------------

# check_engine NAME COMMAND...: run the probe in a gVisor container started by
# COMMAND (which ends with the image's arguments), from the host side.
check_engine() {
    local name="$1"; shift
    python3 - "$name" "$IMAGE" "$@" <<'EOF'
import os, platform, socket, subprocess, sys, tempfile, threading
name, image, command = sys.argv[1], sys.argv[2], sys.argv[3:]
work = tempfile.mkdtemp(prefix="rayfine-gvisor-check-")
os.chmod(work, 0o777)
host_sock = os.path.join(work, "host.sock")
listener = socket.socket(socket.AF_UNIX)
listener.bind(host_sock)
os.chmod(host_sock, 0o666)
listener.listen(1)
listener.settimeout(90)
probe = r'''
import os, platform, socket
s = socket.socket(socket.AF_UNIX); s.connect("/run/rayfine/host.sock")
s.sendall(platform.release().encode()); s.close()
own = socket.socket(socket.AF_UNIX); own.bind("/run/rayfine/ct.sock"); os.chmod("/run/rayfine/ct.sock", 0o666)
own.listen(1); own.settimeout(60); c, _ = own.accept(); c.sendall(b"pong"); c.close()
'''
run = subprocess.Popen(command + ["--rm", "--network=none", "--user", "10001:10001",
    "-v", f"{work}:/run/rayfine", image, "python3", "-c", probe],
    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
try:
    conn, _ = listener.accept()
    release = conn.recv(200).decode()
    for _ in range(100):
        try:
            c = socket.socket(socket.AF_UNIX); c.settimeout(10); c.connect(os.path.join(work, "ct.sock"))
            break
        except OSError:
            c.close(); threading.Event().wait(0.1)
    answer = c.recv(10)
    out, _ = run.communicate(timeout=60)
    if run.returncode != 0 or answer != b"pong":
        sys.exit(f"{name}: probe container failed ({run.returncode}): {out.decode()[-800:]}")
    if release == platform.release():
        sys.exit(f"{name}: the container saw the host's kernel {release}: not running under gVisor")
    print(f"[rayfine] gVisor works on {name}: kernel inside {release} (host {platform.release()}),"
          " Unix sockets on the run dir work both ways")
except socket.timeout:
    run.kill()
    out, _ = run.communicate()
    sys.exit(f"{name}: the probe container never connected to the host socket: {out.decode()[-800:]}")
finally:
    subprocess.run(["rm", "-rf", work])
EOF
}

# --- docker -------------------------------------------------------------------

dockerd_pid() {
    local pid
    pid="$(cat /var/run/docker.pid 2>/dev/null || true)"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && { echo "$pid"; return; }
    pidof dockerd | awk '{print $1}'
}

docker_config_file() {  # the daemon.json dockerd actually reads
    local pid="$1"
    tr '\0' '\n' <"/proc/$pid/cmdline" | awk '
        prev == "--config-file" { print; exit }
        /^--config-file=/ { sub(/^--config-file=/, ""); print; exit }
        { prev = $0 }' | grep . || echo /etc/docker/daemon.json
}

setup_docker() {
    command -v docker >/dev/null || die "docker is not installed (bash scripts/install-engines.sh)"
    local pid conf
    pid="$(dockerd_pid)"
    [ -n "$pid" ] || die "dockerd is not running (bash scripts/install-engines.sh starts it)"
    conf="$(docker_config_file "$pid")"
    local status
    status="$(python3 - "$conf" "$RUNSC" "$replace" "${FLAGS[@]}" <<'EOF'
import json, os, sys, tempfile
conf, runsc, replace, flags = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4:]
data = {}
if os.path.exists(conf):
    with open(conf) as f:
        text = f.read()
    data = json.loads(text) if text.strip() else {}
want = {"path": runsc, "runtimeArgs": flags}
have = data.get("runtimes", {}).get("runsc")
if have == want:
    print("present"); sys.exit()
if have is not None and not replace:
    print("conflict " + json.dumps(have)); sys.exit()
data.setdefault("runtimes", {})["runsc"] = want
conf = os.path.abspath(conf)
os.makedirs(os.path.dirname(conf), exist_ok=True)
fd, tmp = tempfile.mkstemp(dir=os.path.dirname(conf))
with os.fdopen(fd, "w") as f:
    json.dump(data, f, indent=2); f.write("\n")
if os.path.exists(conf):
    os.chmod(tmp, os.stat(conf).st_mode & 0o7777)
else:
    os.chmod(tmp, 0o644)
os.replace(tmp, conf)
print("written")
EOF
)"
    case "$status" in
        present) log "docker: runtime runsc already in $conf" ;;
        written) log "docker: runtime runsc written to $conf" ;;
        conflict*) die "$conf already defines a different 'runsc' runtime (${status#conflict }); rerun with --replace to use Rayfine's: ${FLAGS[*]}" ;;
        *) die "could not update $conf: $status" ;;
    esac
    if ! docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q "host-uds=all"; then
        log "docker: reloading dockerd's configuration (SIGHUP; containers keep running)"
        kill -HUP "$pid"
        local i
        for i in $(seq 20); do
            docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q "host-uds=all" && break
            sleep 0.5
        done
        docker info --format '{{json .Runtimes}}' | grep -q "host-uds=all" \
            || die "dockerd did not pick up the runsc runtime; see its log"
    fi
    check_engine docker docker run --runtime=runsc
}

# --- podman -------------------------------------------------------------------

# Adds KEY = VALUE under [SECTION] of containers.conf unless the key is there.
ensure_conf_key() {  # SECTION KEY LINE
    local section="$1" key="$2" line="$3" have tmp
    touch "$CONTAINERS_CONF"
    have="$(awk -v s="[$section]" -v k="$key" '
        /^[[:space:]]*\[/ { cur = $0; gsub(/[[:space:]]/, "", cur); next }
        cur == s && $0 ~ "^[[:space:]]*" k "[[:space:]]*=" { gsub(/[[:space:]]/, ""); print; exit }
        ' "$CONTAINERS_CONF")"
    if [ -n "$have" ]; then
        [ "$have" = "${line//[[:space:]]/}" ] \
            || log "warning: $CONTAINERS_CONF sets its own [$section] $key; keeping it (Rayfine wants: $line)"
        return 0
    fi
    tmp="$(mktemp)"
    awk -v s="[$section]" -v l="$line" '
        { print }
        { h = $0; gsub(/[[:space:]]/, "", h) }
        h == s && !done { print l; done = 1 }
        END { if (!done) { print ""; print s; print l } }' "$CONTAINERS_CONF" >"$tmp"
    cat "$tmp" >"$CONTAINERS_CONF"
    rm -f "$tmp"
    log "podman: added [$section] $key to $CONTAINERS_CONF"
}

podman_gvisor_runtime() {  # the default runtime of the service on PODMAN_SOCK, or nothing
    curl -sf --max-time 5 --unix-socket "$PODMAN_SOCK" http://d/v4.0.0/libpod/info 2>/dev/null \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["host"]["ociRuntime"]["path"])' 2>/dev/null
}

setup_podman() {
    command -v podman >/dev/null || die "podman is not installed (bash scripts/install-engines.sh)"
    command -v curl >/dev/null || die "curl is needed to talk to the podman service"
    mkdir -p "$(dirname "$CONTAINERS_CONF")"
    ensure_conf_key engine.runtimes runsc "runsc = [\"$WRAPPER\"]"
    local have
    have="$(podman_gvisor_runtime || true)"
    if [ "$have" = "$WRAPPER" ]; then
        log "podman: gVisor service already answering on $PODMAN_SOCK"
    else
        [ -z "$have" ] || die "$PODMAN_SOCK is served with runtime $have, not $WRAPPER; stop that service first"
        mkdir -p "$(dirname "$PODMAN_SOCK")"
        rm -f "$PODMAN_SOCK"  # stale: nothing answers on it
        log "podman: starting the gVisor API service on $PODMAN_SOCK (log: /var/log/rayfine-podman-runsc.log)"
        (cd / && exec setsid podman --runtime "$WRAPPER" system service --time=0 "unix://$PODMAN_SOCK" \
            >>/var/log/rayfine-podman-runsc.log 2>&1 </dev/null) &
        local i
        for i in $(seq 30); do
            [ "$(podman_gvisor_runtime || true)" = "$WRAPPER" ] && break
            sleep 1
        done
        [ "$(podman_gvisor_runtime || true)" = "$WRAPPER" ] \
            || die "the podman gVisor service did not answer within 30 s; tail /var/log/rayfine-podman-runsc.log"
    fi
    check_engine podman podman --remote --url "unix://$PODMAN_SOCK" run
}

[ "$want_docker" = 1 ] && setup_docker
[ "$want_podman" = 1 ] && setup_podman
log "gVisor ready (isolation=\"gvisor\")"
