"""Run inside a test container: try every way out, print one JSON line of outcomes.

Copied into the run dir (mounted at /run/rayfine) with egress_forward.py and
the fake internet's certificate; started as the container's command with
the egress variables set.  Stdlib only.  The host-side test judges the output.
"""

import json
import os
import socket
import ssl
import sys
import urllib.error
import urllib.request

sys.path.insert(0, "/run/rayfine")
import egress_forward

CA = "/run/rayfine/ca.pem"
FAKE = json.loads(os.environ["PROBE_FAKE"])  # addresses of the fake internet and the host port
PROXY = ("127.0.0.1", int(os.environ.get("RAYFINE_EGRESS_PORT", "3128")))


def outcome(fn):
    try:
        return fn()
    except Exception as exc:  # every failure is an outcome to report
        return {"error": type(exc).__name__, "detail": str(exc)[:200]}


def get(url, data=None):
    context = ssl.create_default_context(cafile=CA)
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(url, data=data, timeout=15) as response:
            return {"status": response.status, "body": json.loads(response.read())}
    except urllib.error.HTTPError as exc:
        return {"status": exc.code, "reason": exc.headers.get("X-Rayfine-Egress")}


def ask(request):
    """Send a raw request to the forwarder; the status and the proxy's reason."""
    with socket.create_connection(PROXY, timeout=15) as sock:
        sock.sendall(request)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    reason = None
    for line in data.split(b"\r\n"):
        if line.lower().startswith(b"x-rayfine-egress:"):
            reason = line.split(b":", 1)[1].strip().decode()
    return {"status": int(data[9:12]) if data.startswith(b"HTTP/1.1 ") else 0, "reason": reason}


def connect(target):
    return ask(f"CONNECT {target} HTTP/1.1\r\n\r\n".encode())


def tls_with_name(target, server_name):
    """CONNECT to ``target``, then start TLS naming ``server_name``."""
    sock = socket.create_connection(PROXY, timeout=15)
    sock.sendall(f"CONNECT {target} HTTP/1.1\r\n\r\n".encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += sock.recv(1)
    context = ssl.create_default_context(cafile=CA)
    with context.wrap_socket(sock, server_hostname=server_name) as tls:
        tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return {"answer": tls.recv(100).decode(errors="replace")}


def direct(host, port):
    with socket.create_connection((host, port), timeout=5):
        return {"connected": True}


def main():
    forwarder = egress_forward.start_from_env()
    assert forwarder is not None, "RAYFINE_EGRESS_SOCKET is not set"
    a, v6, host_port = FAKE["allowed_ip"], FAKE["server_v6"], FAKE["host_port"]
    checks = {
        "https_allowed": lambda: get("https://api.allowed.test/v1/models"),
        "https_wildcard": lambda: get("https://x.models.test/"),
        "https_listed_port": lambda: get("https://api.allowed.test:8443/"),
        "http_allowed": lambda: get("http://api.allowed.test/p?q=1"),
        "post_1mb": lambda: get("https://api.allowed.test/upload", data=b"x" * 1048576),
        "denied_host": lambda: connect("denied.test:443"),
        "denied_port": lambda: connect("api.allowed.test:8080"),
        "ip_literal": lambda: connect(f"{a}:443"),
        "ipv6_literal": lambda: connect(f"[{v6}]:443"),
        "decimal_ip": lambda: connect("2130706433:443"),
        "dns_loopback": lambda: connect("rebind-loopback.test:443"),
        "dns_metadata": lambda: connect("metadata.test:80"),
        "dns_private": lambda: connect("lan.test:443"),
        "dns_this_host": lambda: connect("self.test:443"),
        "dns_mapped_loopback": lambda: connect("mapped.test:443"),
        "sni_mismatch": lambda: tls_with_name("api.allowed.test:443", "other.allowed.test"),
        "http_denied": lambda: ask(
            b"GET http://denied.test/ HTTP/1.1\r\nHost: denied.test\r\n\r\n"
        ),
        "host_mismatch": lambda: ask(
            b"GET http://api.allowed.test/ HTTP/1.1\r\nHost: denied.test\r\n\r\n"
        ),
        "smuggled_connect": lambda: ask(
            b"CONNECT api.allowed.test:443 HTTP/1.1\r\n\r\nCONNECT denied.test:443 HTTP/1.1\r\n\r\n"
        ),
        "long_header": lambda: ask(
            b"CONNECT api.allowed.test:443 HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n"
        ),
        "direct_ipv4": lambda: direct(a, 443),
        "direct_ipv6": lambda: direct(v6, 443),
        "host_loopback_direct": lambda: direct("127.0.0.1", host_port),
        "host_loopback_via_proxy": lambda: connect(f"127.0.0.1:{host_port}"),
        "localhost_via_proxy": lambda: connect(f"localhost:{host_port}"),
    }
    results = {name: outcome(fn) for name, fn in checks.items()}
    results["engine_sockets"] = [
        p
        for p in ("/var/run/docker.sock", "/run/docker.sock", "/run/podman/podman.sock",
                  "/run/containerd/containerd.sock", "/run/podman/podman-runsc.sock")
        if os.path.exists(p)
    ]  # fmt: skip
    results["interfaces"] = [name for _, name in socket.if_nameindex()]
    results["run_dir"] = sorted(os.listdir("/run/rayfine"))
    print("PROBE " + json.dumps(results), flush=True)


main()
