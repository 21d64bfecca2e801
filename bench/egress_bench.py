"""What egress and gVisor cost: proxy latency, cold start and Unix-socket round trips, side by side.

    sudo .venv/bin/python bench/egress_bench.py            # about two minutes on 2 CPUs
    sudo .venv/bin/python bench/egress_bench.py --quick    # fewer rounds, for a smoke run

Needs root (it creates a network namespace holding a fake HTTPS server,
tests/egress/netns.py) and, for (b)-(d), Docker and Podman with gVisor set up
(scripts/install-gvisor.sh; variants that are not set up are skipped).
Traffic goes only to that namespace and to containers it starts; all of them
are removed at the end.  Ratios are the measured path's cost over the
baseline's (lower is better; 1.00x = no overhead):

(a) on the host: HTTPS through the in-container forwarder and the egress
    proxy (a separate ``serve`` process, as for detached environments) vs
    straight to the server: a new connection plus one GET, a GET on an
    established tunnel, and bulk upload;
(b) the same through forwarder and proxy from inside a container without
    network: gVisor vs runc;
(c) cold start: container create -> a Python process answering on a Unix
    socket in the run dir, gVisor vs runc, on docker and podman;
(d) one 100-byte request/answer over that Unix socket, gVisor vs runc.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from egress.netns import FakeInternet, can_create
from measure import Row, print_table, us

from rayfine_core.egress import EgressPolicy, container_env
from rayfine_core.egress.isolation import (
    check_started_under_gvisor,
    docker_create_options,
    gvisor_available,
    podman_service_url,
)
from rayfine_core.image import egress_forward

IMAGE = "rayfine/python:3.11-bookworm"
PODMAN_SOCKET = "unix:///run/podman/podman.sock"
HOST = "api.allowed.test"


# --- a tiny HTTPS client: a GET on a socket, keep-alive -------------------------------


def get(tls: ssl.SSLSocket, host: str = HOST, body: bytes = b"") -> bytes:
    method = b"POST" if body else b"GET"
    tls.sendall(
        method
        + b" / HTTP/1.1\r\nHost: "
        + host.encode()
        + b"\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = tls.recv(4096)
        if not chunk:
            raise ConnectionError("closed")
        head += chunk
    head, _, rest = head.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(rest) < length:
        rest += tls.recv(65536)
    return rest


def tunnel(address: Any) -> socket.socket:
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.connect(address)
    if family == socket.AF_INET:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(f"CONNECT {HOST}:443 HTTP/1.1\r\n\r\n".encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 200"), head
    return sock


def direct(ip: str) -> socket.socket:
    sock = socket.create_connection((ip, 443))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def median_time(fn: Callable[[], Any], n: int) -> float:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


# --- (a) on the host ---------------------------------------------------------


def host_latency(fake: FakeInternet, work: Path, rounds: int) -> list[Row]:
    print("(a) HTTPS on the host: forwarder + proxy vs direct ...", flush=True)
    context = ssl.create_default_context(cafile=str(fake.cert))
    sock_path = str(work / "egress.sock")
    proxy = start_proxy(fake, sock_path, work / "proxy.log")
    forwarder = subprocess.Popen(
        [sys.executable, egress_forward.__file__, "--socket", sock_path, "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert forwarder.stdout is not None
        port = int(forwarder.stdout.readline().split(":")[2].split()[0])
        via: Callable[[], socket.socket] = lambda: tunnel(("127.0.0.1", port))  # noqa: E731
        straight: Callable[[], socket.socket] = lambda: direct(fake.allowed_ip)  # noqa: E731

        def fresh(opener: Callable[[], socket.socket]) -> Callable[[], None]:
            def one() -> None:
                with context.wrap_socket(opener(), server_hostname=HOST) as tls:
                    get(tls)

            return one

        new_via, new_direct = interleave(fresh(via), fresh(straight), rounds)
        with (
            context.wrap_socket(via(), server_hostname=HOST) as a,
            context.wrap_socket(straight(), server_hostname=HOST) as b,
        ):
            warm_via, warm_direct = interleave(lambda: get(a), lambda: get(b), rounds * 10)
            blob = os.urandom(32 * 2**20)
            up_via, up_direct = interleave(lambda: get(a, body=blob), lambda: get(b, body=blob), 3)
    finally:
        forwarder.terminate()
        forwarder.wait(10)
        stop_proxy(proxy, sock_path)
    mb = 32 * 2**20 / 1e6
    return [
        Row(
            "(a)",
            "new HTTPS connection + GET",
            us(new_via),
            f"direct {us(new_direct)}",
            new_via / new_direct,
        ),
        Row(
            "(a)",
            "GET on an established tunnel",
            us(warm_via),
            f"direct {us(warm_direct)}",
            warm_via / warm_direct,
        ),
        Row(
            "(a)",
            "32 MiB upload",
            f"{mb / up_via:,.0f} MB/s",
            f"direct {mb / up_direct:,.0f} MB/s",
            up_via / up_direct,
        ),
    ]


def interleave(a: Callable[[], Any], b: Callable[[], Any], n: int) -> tuple[float, float]:
    """Medians of ``a`` and ``b``, run in alternating blocks so drift hits both alike."""
    for fn in (a, b):
        fn()  # warm-up
    ta: list[float] = []
    tb: list[float] = []
    for _ in range(4):
        ta.append(median_time(a, max(1, n // 4)))
        tb.append(median_time(b, max(1, n // 4)))
    return statistics.median(ta), statistics.median(tb)


def start_proxy(fake: FakeInternet, sock_path: str, log: Path) -> subprocess.Popen[bytes]:
    policy = EgressPolicy([HOST], allow_private=[str(fake.subnet)])
    command = [
        sys.executable,
        "-m",
        "rayfine_core.egress",
        "serve",
        "--socket",
        sock_path,
        "--env-id",
        "bench",
        "--log-level",
        "warning",
        "--resolve",
        f"{HOST}={fake.allowed_ip}",
        *policy.to_args(),
    ]
    with open(log, "ab") as sink:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=sink)
    assert process.stdout is not None and process.stdout.readline() == b"ready\n"
    return process


def stop_proxy(process: subprocess.Popen[bytes], sock_path: str) -> None:
    try:
        os.unlink(sock_path)
    except OSError:
        pass
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- containers ----------------------------------------------------------------


class Engines:
    """Start containers under runc or gVisor on docker or podman; remove all of them at the end."""

    def __init__(self) -> None:
        self.started: list[tuple[Any, str]] = []
        self.docker: Any = None
        self.podman: dict[str, Any] = {}
        try:
            import docker

            self.docker = docker.from_env(timeout=120)
            self.docker.ping()
        except Exception as exc:
            print(f"  docker unavailable: {exc}")
            self.docker = None
        try:
            import podman

            self.podman["main"] = podman.PodmanClient(base_url=PODMAN_SOCKET)
            self.podman["main"].ping()
            if gvisor_available("podman") is None:
                self.podman["gvisor"] = podman.PodmanClient(base_url=podman_service_url("gvisor"))
        except Exception as exc:
            print(f"  podman unavailable: {exc}")
            self.podman = {}

    def variants(self) -> list[tuple[str, str]]:
        found = []
        for engine in ("docker", "podman"):
            if (engine == "docker" and self.docker) or (engine == "podman" and self.podman):
                reason = gvisor_available(engine)
                if reason:
                    print(f"  {engine}: gVisor skipped: {reason}")
                    continue
                found.append(engine)
        return [(e, i) for e in found for i in ("container", "gvisor")]

    def start(
        self, engine: str, isolation: str, run_dir: Path, command: list[str], env: dict[str, str]
    ) -> str:
        options: dict[str, Any] = dict(
            image=IMAGE,
            command=command,
            environment=env,
            user="10001:10001",
            cap_drop=["ALL"],
            network_mode="none",
            name=f"egress-bench-{secrets.token_hex(4)}",
            labels={"rayfine.bench": "egress"},
        )
        volumes = {str(run_dir): {"bind": "/run/rayfine", "mode": "rw"}}
        if engine == "docker":
            options.update(docker_create_options(isolation))
            container = self.docker.containers.create(
                **options, volumes=volumes, security_opt=["no-new-privileges:true"]
            )
            self.started.append((self.docker, container.id))
            if isolation == "gvisor":
                container.reload()
                check_started_under_gvisor("docker", container.attrs)
            container.start()
            return str(container.id)
        client = self.podman["gvisor" if isolation == "gvisor" else "main"]
        container = client.containers.create(**options, volumes=volumes, no_new_privileges=True)
        self.started.append((self.podman["main"], container.id))
        if isolation == "gvisor":
            check_started_under_gvisor("podman", container.attrs)
        container.start()
        return str(container.id)

    def output(self, engine: str, container_id: str, timeout: float = 300) -> str:
        client = self.docker if engine == "docker" else self.podman["main"]
        container = client.containers.get(container_id)
        container.wait(timeout=timeout)
        logs = container.logs()
        return (logs if isinstance(logs, bytes) else b"".join(logs)).decode(errors="replace")

    def remove(self, container_id: str) -> None:
        for client, cid in list(self.started):
            if cid == container_id:
                try:
                    client.containers.get(cid).remove(force=True)
                except Exception:
                    pass
                self.started.remove((client, cid))

    def close(self) -> None:
        for _, cid in list(self.started):
            self.remove(cid)


# --- (b) egress from inside containers ---------------------------------------------------

IN_CONTAINER = r"""
import json, socket, ssl, statistics, sys, time
sys.path.insert(0, "/run/rayfine")
import egress_forward
egress_forward.start_from_env()
n = int(sys.argv[1])
ctx = ssl.create_default_context(cafile="/run/rayfine/ca.pem")
def tunnel():
    s = socket.create_connection(("127.0.0.1", 3128))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(b"CONNECT api.allowed.test:443 HTTP/1.1\r\n\r\n")
    h = b""
    while not h.endswith(b"\r\n\r\n"):
        h += s.recv(1)
    return ctx.wrap_socket(s, server_hostname="api.allowed.test")
def get(t):
    t.sendall(b"GET / HTTP/1.1\r\nHost: api.allowed.test\r\nContent-Length: 0\r\n\r\n")
    h = b""
    while b"\r\n\r\n" not in h:
        h += t.recv(4096)
    h, _, rest = h.partition(b"\r\n\r\n")
    length = int(h.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(rest) < length:
        rest += t.recv(65536)
def timed(fn, k):
    out = []
    for _ in range(k):
        t0 = time.perf_counter(); fn(); out.append(time.perf_counter() - t0)
    return statistics.median(out)
def fresh():
    with tunnel() as t:
        get(t)
fresh()
new = timed(fresh, n)
with tunnel() as t:
    get(t)
    warm = timed(lambda: get(t), n * 10)
print("RESULT " + json.dumps({"new": new, "warm": warm}), flush=True)
"""


def container_egress(engines: Engines, fake: FakeInternet, work: Path, rounds: int) -> list[Row]:
    print("(b) HTTPS from inside containers through forwarder + proxy ...", flush=True)
    results: dict[tuple[str, str], dict[str, float]] = {}
    for engine, isolation in engines.variants():
        run_dir = fresh_run_dir(work, fake)
        (run_dir / "client.py").write_text(IN_CONTAINER)
        sock_path = str(run_dir / "egress.sock")
        proxy = start_proxy(fake, sock_path, work / "proxy.log")
        try:
            cid = engines.start(
                engine,
                isolation,
                run_dir,
                ["python3", "/run/rayfine/client.py", str(rounds)],
                container_env(),
            )
            out = engines.output(engine, cid)
            engines.remove(cid)
            line = next((x for x in out.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                print(f"  {engine}/{isolation} failed: {out[-500:]}")
                continue
            results[(engine, isolation)] = json.loads(line[7:])
        finally:
            stop_proxy(proxy, sock_path)
    rows = []
    for engine in ("docker", "podman"):
        g, r = results.get((engine, "gvisor")), results.get((engine, "container"))
        if g and r:
            rows.append(
                Row(
                    "(b)",
                    f"{engine}: new HTTPS connection + GET",
                    f"gVisor {us(g['new'])}",
                    f"runc {us(r['new'])}",
                    g["new"] / r["new"],
                )
            )
            rows.append(
                Row(
                    "(b)",
                    f"{engine}: GET on an established tunnel",
                    f"gVisor {us(g['warm'])}",
                    f"runc {us(r['warm'])}",
                    g["warm"] / r["warm"],
                )
            )
    return rows


def fresh_run_dir(work: Path, fake: FakeInternet) -> Path:
    path = Path(tempfile.mkdtemp(dir=work))
    path.chmod(0o777)
    shutil.copy(egress_forward.__file__, path / "egress_forward.py")
    shutil.copy(fake.cert, path / "ca.pem")
    for item in path.iterdir():
        item.chmod(0o644)
    return path


# --- (c) cold start and (d) Unix-socket round trips ------------------------------------

ECHO_SERVER = r"""
import os, socket
s = socket.socket(socket.AF_UNIX)
s.bind("/run/rayfine/echo.sock")
os.chmod("/run/rayfine/echo.sock", 0o666)
s.listen(8)
while True:
    c, _ = s.accept()
    while True:
        data = c.recv(65536)
        if not data:
            break
        c.sendall(data)
    c.close()
"""


def cold_start_and_uds(engines: Engines, work: Path, rounds: int, calls: int) -> list[Row]:
    print("(c)+(d) cold start and Unix-socket round trips ...", flush=True)
    starts: dict[tuple[str, str], list[float]] = {}
    trips: dict[tuple[str, str], float] = {}
    variants = engines.variants()
    for _ in range(rounds):
        for variant in variants:
            seconds, trip = one_cold_start(engines, work, *variant, calls)
            starts.setdefault(variant, []).append(seconds)
            trips[variant] = min(trips.get(variant, trip), trip)
    rows = []
    for engine in ("docker", "podman"):
        g, r = starts.get((engine, "gvisor")), starts.get((engine, "container"))
        if g and r:
            gm, rm = statistics.median(g), statistics.median(r)
            rows.append(
                Row(
                    "(c)",
                    f"{engine}: create -> answering on a Unix socket",
                    f"gVisor {gm:.2f} s",
                    f"runc {rm:.2f} s",
                    gm / rm,
                )
            )
    for engine in ("docker", "podman"):
        g2, r2 = trips.get((engine, "gvisor")), trips.get((engine, "container"))
        if g2 and r2:
            rows.append(
                Row(
                    "(d)",
                    f"{engine}: 100-byte round trip over the socket",
                    f"gVisor {us(g2)}",
                    f"runc {us(r2)}",
                    g2 / r2,
                )
            )
    return rows


def one_cold_start(
    engines: Engines, work: Path, engine: str, isolation: str, calls: int
) -> tuple[float, float]:
    run_dir = Path(tempfile.mkdtemp(dir=work))
    run_dir.chmod(0o777)
    sock_path = run_dir / "echo.sock"
    started = time.perf_counter()
    cid = engines.start(engine, isolation, run_dir, ["python3", "-c", ECHO_SERVER], {})
    try:
        conn = wait_for_socket(str(sock_path), 60)
        conn.sendall(b"x")
        assert conn.recv(1) == b"x"
        seconds = time.perf_counter() - started
        payload = b"p" * 100

        def trip() -> None:
            conn.sendall(payload)
            got = b""
            while len(got) < 100:
                got += conn.recv(100)

        for _ in range(50):
            trip()
        median = median_time(trip, calls)
        conn.close()
        return seconds, median
    finally:
        engines.remove(cid)


def wait_for_socket(path: str, timeout: float) -> socket.socket:
    deadline = time.perf_counter() + timeout
    while True:
        try:
            conn = socket.socket(socket.AF_UNIX)
            conn.connect(path)
            return conn
        except OSError:
            conn.close()
            if time.perf_counter() > deadline:
                raise
            time.sleep(0.005)


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    # SIGTERM ends the run like Ctrl-C does: through the finally below, which removes
    # every container and the namespace.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    reason = can_create()
    if reason:
        sys.exit(f"egress bench: {reason}")
    rounds = 8 if args.quick else 60
    work = Path(tempfile.mkdtemp(prefix="rayfine-egress-bench-"))
    work.chmod(0o755)
    fake = FakeInternet.create(work)
    engines = Engines()
    rows: list[Row] = []
    try:
        rows += host_latency(fake, work, rounds)
        rows += container_egress(engines, fake, work, rounds)
        rows += cold_start_and_uds(
            engines, work, 3 if args.quick else 7, 500 if args.quick else 3000
        )
    finally:
        engines.close()
        fake.destroy()
        shutil.rmtree(work, ignore_errors=True)
    print()
    print_table(rows)


if __name__ == "__main__":
    main()
