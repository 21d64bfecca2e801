"""The server on its own, before and after, measured in one run over Unix sockets.

    .venv/bin/python rayfine_server/bench_server.py            # about a minute on 2 CPUs
    .venv/bin/python rayfine_server/bench_server.py --quick    # a smoke run
    .venv/bin/python rayfine_server/bench_server.py --old-ref main --python /path/to/python

"Before" is the server as committed at ``--old-ref`` (``git show``; it needs
uvicorn and Starlette importable, as in the repo's .venv), "after" is this
tree's.  Both run as subprocesses on a Unix socket in a temporary directory,
serve the same echo env.py, and are driven by the repo's own clients
(``rayfine_core.client.Client`` / ``AsyncClient``); their runs alternate in
blocks so that load from other processes on the machine hits both alike.
Not collected by pytest (no ``test_`` prefix).  Traffic goes only to the
Unix sockets this script creates.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "rayfine_core" / "src"))

from rayfine_core.client import AsyncClient, Client  # noqa: E402
from rayfine_core.protocol import encode_call  # noqa: E402
from rayfine_core.types import Endpoint  # noqa: E402

TOKEN = "bench-token"
ECHO_ENV = """
class Actor:
    max_sessions = 2000

    def __init__(self, seed=0):
        self.seed = seed

    async def echo(self, x):
        return x

    def echo_sync(self, x):
        return x
"""
BODY = encode_call("echo", [1], {}, None)
SYNC_BODY = encode_call("echo_sync", [1], {}, None)


class Served:
    """One server subprocess on a Unix socket."""

    def __init__(self, name: str, pythonpath: str, env_dir: Path, sock: Path, python: str) -> None:
        self.name = name
        self.sock = sock
        environ = {
            **os.environ,
            "PYTHONPATH": pythonpath,
            "RAYFINE_ENV_DIR": str(env_dir),
            "RAYFINE_UDS": str(sock),
            "RAYFINE_TOKEN": TOKEN,
        }
        started = time.perf_counter()
        self.process = subprocess.Popen(
            [python, "-m", "rayfine_server"],
            env=environ,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.endpoint = Endpoint(unix_socket=str(sock))
        self.client = Client(self.endpoint, TOKEN)
        _wait_healthy(self.client, sock, self.process)
        self.cold_start = time.perf_counter() - started

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def stop(self) -> None:
        self.client.close()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _wait_healthy(client: Client, sock: Path, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        if sock.exists():
            try:
                if client.get("/health", timeout=5).status_code == 200:
                    return
            except Exception:  # noqa: BLE001 - not listening yet
                pass
        time.sleep(0.002)
    raise SystemExit("server did not become healthy in 30 s")


def percentile(values: List[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def sequential(client: Client, body: bytes, n: int) -> List[float]:
    latencies = []
    for _ in range(n):
        started = time.perf_counter()
        response = client.post("/call", body, None)
        latencies.append(time.perf_counter() - started)
        assert response.status_code == 200, response.content
    return latencies


async def in_flight(
    endpoint: Endpoint, bodies: List[bytes], n: int, width: int
) -> Tuple[float, List[float]]:
    """``n`` calls, ``width`` in flight at once (worker ``i`` sends ``bodies[i % len]``)."""
    client = AsyncClient(endpoint, TOKEN)
    latencies: List[float] = []

    async def worker(i: int, count: int, out: List[float]) -> None:
        body = bodies[i % len(bodies)]
        for _ in range(count):
            started = time.perf_counter()
            response = await client.post("/call", body, None)
            out.append(time.perf_counter() - started)
            assert response.status_code == 200, response.content

    await asyncio.gather(*(worker(i, 3, []) for i in range(width)))  # warm the pool
    started = time.perf_counter()
    await asyncio.gather(*(worker(i, n // width, latencies) for i in range(width)))
    wall = time.perf_counter() - started
    await client.aclose()
    return len(latencies) / wall, latencies


def alternate(
    servers: List[Served], blocks: int, run: Callable[[Served], Any]
) -> Dict[str, List[Any]]:
    """Run ``run`` on each server in turn, ``blocks`` times, rotating who goes first."""
    results: Dict[str, List[Any]] = {s.name: [] for s in servers}
    for block in range(blocks):
        order = servers[block % len(servers) :] + servers[: block % len(servers)]
        for served in order:
            results[served.name].append(run(served))
    return results


def flat(lists: List[List[float]]) -> List[float]:
    return [x for part in lists for x in part]


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f} µs"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.2f} ms"


def prepare(workdir: Path, old_ref: str) -> Dict[str, str]:
    """Write the echo env and the old server's source; return PYTHONPATH per server."""
    env_dir = workdir / "env"
    env_dir.mkdir()
    (env_dir / "env.py").write_text(ECHO_ENV)
    old = workdir / "old" / "rayfine_server"
    old.mkdir(parents=True)
    listing = subprocess.run(
        ["git", "ls-tree", "--name-only", f"{old_ref}:rayfine_server/src/rayfine_server"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in listing:
        source = subprocess.run(
            ["git", "show", f"{old_ref}:rayfine_server/src/rayfine_server/{name}"],
            cwd=REPO,
            capture_output=True,
            check=True,
        ).stdout
        (old / name).write_bytes(source)
    return {"before": str(workdir / "old"), "after": str(HERE / "src")}


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls, for a smoke run")
    parser.add_argument("--old-ref", default="main", help="git ref of the 'before' server")
    parser.add_argument("--python", default=sys.executable, help="interpreter for the servers")
    parser.add_argument("--no-before", action="store_true", help="measure this tree only")
    options = parser.parse_args(argv)
    calls = 400 if options.quick else 2000
    blocks = 2 if options.quick else 4
    workdir = Path(tempfile.mkdtemp(prefix="rfb"))
    try:
        paths = prepare(workdir, options.old_ref)
        names = ["after"] if options.no_before else ["before", "after"]
        rows = run_all(workdir, paths, names, options.python, calls, blocks, options.quick)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print_table(rows, names)


Row = Tuple[str, Dict[str, str]]


def run_all(
    workdir: Path,
    paths: Dict[str, str],
    names: List[str],
    python: str,
    calls: int,
    blocks: int,
    quick: bool,
) -> List[Row]:
    env_dir = workdir / "env"
    rows: List[Row] = []
    starts: Dict[str, List[float]] = {name: [] for name in names}
    for round_ in range(3 if quick else 7):
        for name in names:
            served = Served(name, paths[name], env_dir, workdir / f"c{name}{round_}.sock", python)
            starts[name].append(served.cold_start)
            served.stop()
    rows.append(
        (
            "cold start: spawn -> first 200 /health (median)",
            {n: f"{statistics.median(v):.3f} s" for n, v in starts.items()},
        )
    )

    servers = [
        Served(name, paths[name], env_dir, workdir / f"{name}.sock", python) for name in names
    ]
    try:
        for served in servers:
            sequential(served.client, BODY, 200)  # warm-up
        seq = alternate(servers, blocks, lambda s: sequential(s.client, BODY, calls // blocks))
        rows.append(
            (
                "sequential async call, median",
                {n: us(statistics.median(flat(v))) for n, v in seq.items()},
            )
        )
        rows.append(
            (
                "sequential async call, p99",
                {n: us(percentile(flat(v), 0.99)) for n, v in seq.items()},
            )
        )
        sync = alternate(
            servers, blocks, lambda s: sequential(s.client, SYNC_BODY, calls // blocks)
        )
        rows.append(
            (
                "sequential sync call (worker thread), median",
                {n: us(statistics.median(flat(v))) for n, v in sync.items()},
            )
        )
        rows.append(
            (
                "sequential sync call, p99",
                {n: us(percentile(flat(v), 0.99)) for n, v in sync.items()},
            )
        )
        wide = alternate(
            servers,
            blocks,
            lambda s: asyncio.run(in_flight(s.endpoint, [BODY], 4 * calls // blocks, 64)),
        )
        rows.append(
            (
                "64 calls in flight: calls/s",
                {n: f"{sum(r for r, _ in v) / len(v):,.0f}/s" for n, v in wide.items()},
            )
        )
        rows.append(
            (
                "64 in flight: p50 / p99 latency",
                {
                    n: f"{ms(statistics.median(flat([l for _, l in v])))} / {ms(percentile(flat([l for _, l in v]), 0.99))}"
                    for n, v in wide.items()
                },
            )
        )
        wide_sync = alternate(
            servers,
            blocks,
            lambda s: asyncio.run(in_flight(s.endpoint, [SYNC_BODY], 4 * calls // blocks, 64)),
        )
        rows.append(
            (
                "64 sync calls in flight: calls/s",
                {n: f"{sum(r for r, _ in v) / len(v):,.0f}/s" for n, v in wide_sync.items()},
            )
        )
        rows.append(
            (
                "server RSS after the runs",
                {s.name: f"{s.rss_kib() / 1024:.1f} MiB" for s in servers},
            )
        )
        after = servers[-1]
        if after.name == "after":
            rows += sessions_rows(after, workdir, paths["after"], python, calls, quick)
    finally:
        for served in servers:
            served.stop()
    return rows


def sessions_rows(
    served: Served, workdir: Path, path: str, python: str, calls: int, quick: bool
) -> List[Row]:
    """Sessions, measured on the new server only (the old one has none)."""
    client = served.client
    rows: List[Row] = []
    first: List[float] = []
    for i in range(200 if quick else 1000):
        started = time.perf_counter()
        opened = client.post("/sessions", json.dumps({"kwargs": {"seed": i}}).encode(), None)
        session = opened.json()["session"]
        response = client.post("/call", encode_session_call(session), None)
        first.append(time.perf_counter() - started)
        assert response.status_code == 200, response.content
        client.request("DELETE", f"/sessions/{session}", None, 10)
    rows.append(
        (
            "open session -> first result, p50 / p99",
            {"after": f"{ms(statistics.median(first))} / {ms(percentile(first, 0.99))}"},
        )
    )

    before_rss = served.rss_kib()
    many = 1000
    ids = []
    started = time.perf_counter()
    for i in range(many):
        ids.append(
            client.post("/sessions", json.dumps({"kwargs": {"seed": i}}).encode(), None).json()[
                "session"
            ]
        )
    opened_in = time.perf_counter() - started
    after_rss = served.rss_kib()
    answers = [client.post("/call", encode_session_call(s), None).status_code for s in ids]
    assert answers == [200] * many, set(answers)
    listed = len(client.get("/sessions").json()["sessions"])
    rows.append(
        (
            f"{many} sessions open at once: open time / all answering",
            {"after": f"{opened_in:.2f} s / {listed} listed, {answers.count(200)} answered"},
        )
    )
    rows.append(
        (
            "memory per idle session (RSS delta / 1000)",
            {"after": f"{(after_rss - before_rss) / many:.1f} KiB"},
        )
    )
    bodies = [encode_session_call(s) for s in ids[:256]]
    spread = asyncio.run(in_flight(served.endpoint, bodies, 4 * calls, 256))
    one = asyncio.run(in_flight(served.endpoint, [encode_session_call(ids[0])], 4 * calls, 256))
    plain = asyncio.run(in_flight(served.endpoint, [BODY], 4 * calls, 256))
    rows.append(
        (
            "256 in flight: 256 sessions / one session / no session",
            {"after": f"{spread[0]:,.0f}/s / {one[0]:,.0f}/s / {plain[0]:,.0f}/s"},
        )
    )
    for session in ids:
        client.request("DELETE", f"/sessions/{session}", None, 10)
    return rows


def encode_session_call(session: str) -> bytes:
    return json.dumps({"method": "echo", "args": [1], "session": session}).encode()


def print_table(rows: List[Row], names: List[str]) -> None:
    width = max(len(what) for what, _ in rows)
    header = f"| {'measurement'.ljust(width)} | " + " | ".join(names) + " |"
    print(header)
    print("|" + "-" * (width + 2) + "|" + "|".join("-" * (len(n) + 2) for n in names) + "|")
    for what, values in rows:
        print(f"| {what.ljust(width)} | " + " | ".join(values.get(n, "") for n in names) + " |")


if __name__ == "__main__":
    main()
