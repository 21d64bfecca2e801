"""The kubernetes runtime's speed next to the same work without Rayfine, on the test cluster.

    bash scripts/k8s/cluster.sh up
    .venv/bin/python rayfine_kubernetes/bench_k8s.py            # about three minutes
    .venv/bin/python rayfine_kubernetes/bench_k8s.py --quick

(a) pod start -> first result: ``load_env(..., runtime="kubernetes")`` + one
call, next to the same image started as a bare pod through the API, its
status polled, then its server polled and called.  (b) one call's latency:
through the API server's pod proxy and straight to the pod IP (the same HTTP
client for both), Rayfine's own client at the pod IP, and the docker
runtime's Unix socket on this host.  (c) 20 environments started at once on
two nodes, and on one (the other cordoned).  Everything it starts is
removed at the end; traffic goes only to the cluster's own namespaces.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "scripts" / "k8s" / "cluster.sh"
ENV_DIR = REPO / "bench" / "envs" / "echo"
IMAGE = "k8s-bench-echo:latest"


def cluster_env() -> None:
    """Client settings of the test cluster, unless the caller already points at a cluster."""
    if os.environ.get("KUBECONFIG"):
        return
    out = subprocess.run(["bash", str(CLUSTER), "env"], capture_output=True, text=True, check=True)
    for line in out.stdout.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        os.environ[key] = shlex.split(value)[0]


def median_of(samples: list[float]) -> float:
    return statistics.median(samples)


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


# -- (a) start -> first result ------------------------------------------------------


def rayfine_start(rf: Any) -> float:
    started = time.perf_counter()
    env = rf.load_env(IMAGE, runtime="kubernetes")
    try:
        assert env.echo(1) == 1
        return time.perf_counter() - started
    finally:
        env.cleanup()


def bare_start(kube: Any, image: str, token: str) -> float:
    """The same image as a bare pod: create it, poll its status, then its server, then call it."""
    from rayfine_core import Endpoint

    try:  # the core's layout after its redesign, then before
        from rayfine_core.transport.client import Client
    except ImportError:
        from rayfine_core.client import Client  # type: ignore[no-redef]

    name = f"bare-{uuid.uuid4().hex[:8]}"
    pods = "/api/v1/namespaces/default/pods"
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"rayfine-bench": "bare"}},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "env",
                    "image": image,
                    "env": [{"name": "RAYFINE_TOKEN", "value": token}],
                }
            ],
        },
    }
    started = time.perf_counter()
    kube.request("POST", pods, body=body)
    try:
        while True:
            pod = kube.request("GET", f"{pods}/{name}")
            ip = (pod.get("status") or {}).get("podIP")
            running = any(
                "running" in (s.get("state") or {})
                for s in pod["status"].get("containerStatuses") or ()
            )
            if ip and running:
                break
            time.sleep(0.05)
        client = Client(Endpoint(host=ip, port=8000), token)
        while True:
            try:
                if client.get("/health", timeout=2).status_code == 200:
                    break
            except Exception:
                pass
            time.sleep(0.005)
        assert client.call("echo", [1], {}, None) == 1
        return time.perf_counter() - started
    finally:
        kube.request("DELETE", f"{pods}/{name}", query={"gracePeriodSeconds": 0})


# -- (b) one call -------------------------------------------------------------------


def call_latencies(kube: Any, image: str, calls: int) -> dict[str, float]:
    """Median seconds per call: proxy vs pod IP (one client, a token-less pod), Rayfine's client."""
    import urllib3

    import rayfine_core as rf

    out: dict[str, float] = {}
    with rf.load_env(IMAGE, runtime="kubernetes") as env:
        for _ in range(50):
            env.echo(1)
        out["rayfine client -> pod IP"] = median_of(
            [timed(lambda: env.echo(1)) for _ in range(calls)]
        )
    name = f"open-{uuid.uuid4().hex[:8]}"
    pods = "/api/v1/namespaces/default/pods"
    variables = [
        {"name": "RAYFINE_INSECURE_NO_TOKEN", "value": "1"}
    ]  # no token: measures transport only
    kube.request(
        "POST",
        pods,
        body={
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "env", "image": image, "env": variables}],
            },
        },
    )
    try:
        while not (kube.request("GET", f"{pods}/{name}").get("status") or {}).get("podIP"):
            time.sleep(0.05)
        ip = kube.request("GET", f"{pods}/{name}")["status"]["podIP"]
        creds = kube.credentials()
        http = urllib3.PoolManager(ca_certs=creds.ca_file, maxsize=1)
        body = json.dumps({"method": "echo", "args": [1], "kwargs": {}}).encode()
        proxy = f"{creds.server}{pods}/{name}:8000/proxy/call"
        direct = f"http://{ip}:8000/call"
        headers = {"content-type": "application/json"}
        for url in (direct, direct):  # wait for the server
            for _ in range(400):
                try:
                    if (
                        http.request("GET", url.replace("/call", "/health"), timeout=2).status
                        == 200
                    ):
                        break
                except urllib3.exceptions.HTTPError:
                    pass
                time.sleep(0.01)
        for label, url, extra in (
            ("same client -> pod IP", direct, {}),
            ("same client -> API server pod proxy", proxy, dict(creds.headers)),
        ):
            post = _poster(http, url, body, {**headers, **extra})
            for _ in range(50):
                assert post().status == 200
            out[label] = median_of([timed(post) for _ in range(calls)])
    finally:
        kube.request("DELETE", f"{pods}/{name}", query={"gracePeriodSeconds": 0})
    with rf.load_env(IMAGE, runtime="docker") as env:  # Unix socket on this host (same image)
        for _ in range(50):
            env.echo(1)
        out["rayfine client -> docker UDS (this host)"] = median_of(
            [timed(lambda: env.echo(1)) for _ in range(calls)]
        )
    return out


def _poster(http: Any, url: str, body: bytes, headers: dict[str, str]) -> Callable[[], Any]:
    return lambda: http.request("POST", url, body=body, headers=headers)


# -- (c) concurrent starts ----------------------------------------------------------


def many_starts(rf: Any, count: int) -> tuple[float, set[str]]:
    from rayfine_kubernetes import names

    async def go() -> tuple[float, set[str]]:
        started = time.perf_counter()
        envs = await rf.aload_envs(IMAGE, count, runtime="kubernetes")
        try:
            await asyncio.gather(*(e.echo(1) for e in envs))
            elapsed = time.perf_counter() - started
            nodes = set()
            runtime = rf.get_runtime("kubernetes")
            for e in envs:
                namespace, _, pod = names.split_id(e.handle.id)
                found = runtime.api.request("GET", f"/api/v1/namespaces/{namespace}/pods/{pod}")
                nodes.add(found["spec"].get("nodeName"))
            return elapsed, nodes
        finally:
            await asyncio.gather(*(e.cleanup() for e in envs))

    return asyncio.run(go())


def kubectl(*args: str) -> None:
    subprocess.run([os.environ["RAYFINE_K8S_KUBECTL"], *args], check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--envs", type=int, default=20)
    args = parser.parse_args()
    rounds, calls = (3, 200) if args.quick else (7, 1000)
    cluster_env()
    os.environ.setdefault("RAYFINE_BASE_IMAGE", "rayfine/python:3.11-bookworm")
    os.environ.setdefault("RAYFINE_MAX_CONCURRENT_STARTS", str(args.envs))
    import rayfine_core as rf

    rf.build_image_from_env(ENV_DIR, IMAGE, runtime="kubernetes", quiet=True)
    runtime = rf.get_runtime("kubernetes")
    kube = runtime.api  # the bench measures over the runtime's own API connection
    pinned = runtime.pinned_image(IMAGE)
    token = uuid.uuid4().hex
    for _ in range(2):  # warm: the image on both nodes, connections open
        rayfine_start(rf), bare_start(kube, pinned, token)
    many_starts(rf, 4)
    rows: list[tuple[str, str, str, str]] = []
    ours = [rayfine_start(rf) for _ in range(rounds)]
    bare = [bare_start(kube, pinned, token) for _ in range(rounds)]
    a, b = median_of(ours), median_of(bare)
    rows.append(
        (
            "(a) pod start -> first result",
            f"{a:.2f} s",
            f"bare pod, polled {b:.2f} s",
            f"{a / b:.2f}x",
        )
    )
    lat = call_latencies(kube, pinned, calls)
    uds = lat["rayfine client -> docker UDS (this host)"]
    for label, value in lat.items():
        rows.append(
            (
                f"(b) one call: {label}",
                f"{value * 1000:.2f} ms",
                "docker UDS",
                f"{value / uds:.2f}x",
            )
        )
    proxy, direct = lat["same client -> API server pod proxy"], lat["same client -> pod IP"]
    rows.append(
        ("(b) API server proxy over pod IP (same client)", "", "", f"{proxy / direct:.2f}x")
    )
    two, two_nodes = many_starts(rf, args.envs)
    kubectl("cordon", "n2")
    try:
        one, one_nodes = many_starts(rf, args.envs)
    finally:
        kubectl("uncordon", "n2")
    rows.append(
        (
            f"(c) {args.envs} concurrent starts -> first result",
            f"{two:.2f} s on {len(two_nodes)} nodes",
            f"{one:.2f} s on {len(one_nodes)} node",
            f"{two / one:.2f}x",
        )
    )
    single = median_of(ours)
    rows.append(
        (
            f"(c) {args.envs} starts vs one start",
            f"{two:.2f} s",
            f"{single:.2f} s",
            f"{two / single:.1f}x",
        )
    )
    width = [
        max(len(r[i]) for r in [*rows, ("measurement", "rayfine", "baseline", "ratio")])
        for i in range(4)
    ]
    header = ("measurement", "rayfine", "baseline", "ratio")
    for row in [header, tuple("-" * w for w in width), *rows]:
        print(" | ".join(cell.ljust(w) for cell, w in zip(row, width)))
    runtime.close()


if __name__ == "__main__":
    sys.exit(main())
