"""The server on its own, before and after, measured in one run over Unix sockets.

    .venv/bin/python rayfine_server/bench_server.py            # a few minutes on 2 CPUs
    .venv/bin/python rayfine_server/bench_server.py --quick    # a smoke run
    .venv/bin/python rayfine_server/bench_server.py --old-ref main --python /path/to/python

"before" is the server as committed at ``--old-ref`` (``git show``; it needs
uvicorn and Starlette importable, as in the repo's .venv); "after" is this
tree's on the standard asyncio loop, and "after+uvloop" the same on uvloop
(when uvloop is importable).  Each runs as a subprocess on a Unix socket in
a temporary directory, serves the same echo env.py, and is driven by the
repo's own clients (``rayfine_core.client.Client`` / ``AsyncClient``);
their runs alternate in blocks so that load from other processes on the
machine hits all alike.  Not collected by pytest.  Traffic goes only to the
Unix sockets this script creates.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
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
Row = Tuple[str, Dict[str, str]]


class Config:
    """One server to measure: where its code is and which event loop it runs."""

    def __init__(self, name: str, pythonpath: str, loop: str) -> None:
        self.name = name
        self.pythonpath = pythonpath
        self.loop = loop


class Served:
    """One server subprocess on a Unix socket."""

    def __init__(self, config: Config, env_dir: Path, sock: Path, python: str) -> None:
        self.name = config.name
        environ = {
            **os.environ,
            "PYTHONPATH": config.pythonpath,
            "RAYFINE_LOOP": config.loop,
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
            except Exception as exc:
                del exc
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
        shift = block % len(servers)
        for served in servers[shift:] + servers[:shift]:
            results[served.name].append(run(served))
    return results


def flat(parts: List[List[float]]) -> List[float]:
    return [x for part in parts for x in part]


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f} µs"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.2f} ms"


def latency_rows(what: str, samples: Dict[str, List[List[float]]]) -> List[Row]:
    return [
        (f"{what}, median", {n: us(statistics.median(flat(v))) for n, v in samples.items()}),
        (f"{what}, p99", {n: us(percentile(flat(v), 0.99)) for n, v in samples.items()}),
    ]


def rate_rows(what: str, runs: Dict[str, List[Tuple[float, List[float]]]]) -> List[Row]:
    def p(values: List[Tuple[float, List[float]]], q: float) -> str:
        return ms(percentile(flat([latencies for _, latencies in values]), q))

    return [
        (
            f"{what}: calls/s",
            {n: f"{statistics.mean(r for r, _ in v):,.0f}/s" for n, v in runs.items()},
        ),
        (f"{what}: p50 / p99 latency", {n: f"{p(v, 0.5)} / {p(v, 0.99)}" for n, v in runs.items()}),
    ]


def prepare(workdir: Path, old_ref: str) -> str:
    """Write the echo env and the old server's source; return the old server's PYTHONPATH."""
    (workdir / "env").mkdir()
    (workdir / "env" / "env.py").write_text(ECHO_ENV)
    old = workdir / "old" / "rayfine_server"
    old.mkdir(parents=True)
    tree = f"{old_ref}:rayfine_server/src/rayfine_server"
    names = subprocess.run(
        ["git", "ls-tree", "--name-only", tree],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in names:
        source = subprocess.run(
            ["git", "show", f"{tree}/{name}"], cwd=REPO, capture_output=True, check=True
        ).stdout
        (old / name).write_bytes(source)
    return str(workdir / "old")


def calls_rows(
    configs: List[Config], workdir: Path, python: str, calls: int, blocks: int, rounds: int
) -> List[Row]:
    env_dir = workdir / "env"
    starts: Dict[str, List[float]] = {c.name: [] for c in configs}
    for round_ in range(rounds):
        for index, config in enumerate(configs):
            served = Served(config, env_dir, workdir / f"c{index}{round_}.sock", python)
            starts[config.name].append(served.cold_start)
            served.stop()
    rows: List[Row] = [
        (
            "cold start: spawn -> first 200 /health (median)",
            {n: f"{statistics.median(v):.3f} s" for n, v in starts.items()},
        )
    ]
    servers = [Served(c, env_dir, workdir / f"s{i}.sock", python) for i, c in enumerate(configs)]
    try:
        for served in servers:
            sequential(served.client, BODY, 200)  # warm-up
        per = calls // blocks
        rows += latency_rows(
            "sequential async call",
            alternate(servers, blocks, lambda s: sequential(s.client, BODY, per)),
        )
        rows += latency_rows(
            "sequential sync call (worker thread)",
            alternate(servers, blocks, lambda s: sequential(s.client, SYNC_BODY, per)),
        )
        for body, what in (
            (BODY, "64 async calls in flight"),
            (SYNC_BODY, "64 sync calls in flight"),
        ):
            runs = alternate(
                servers,
                blocks,
                lambda s, body=body: asyncio.run(in_flight(s.endpoint, [body], 4 * per, 64)),
            )
            rows += rate_rows(what, runs)
        rows.append(
            (
                "server RSS after the runs",
                {s.name: f"{s.rss_kib() / 1024:.1f} MiB" for s in servers},
            )
        )
    finally:
        for served in servers:
            served.stop()
    return rows


def session_rows(config: Config, workdir: Path, python: str, calls: int, quick: bool) -> List[Row]:
    """Sessions (the old server has none), each measurement on a fresh server."""
    name = config.name
    rows: List[Row] = []
    served = Served(config, workdir / "env", workdir / "sess1.sock", python)
    try:
        client = served.client
        first: List[float] = []
        for i in range(200 if quick else 1000):
            started = time.perf_counter()
            opened = client.post("/sessions", json.dumps({"kwargs": {"seed": i}}).encode(), None)
            session = opened.json()["session"]
            response = client.post("/call", session_call(session), None)
            first.append(time.perf_counter() - started)
            assert response.status_code == 200, response.content
            client.request("DELETE", f"/sessions/{session}", None, 10)
        rows.append(
            (
                "open session -> first result, p50 / p99",
                {name: f"{ms(statistics.median(first))} / {ms(percentile(first, 0.99))}"},
            )
        )
    finally:
        served.stop()

    served = Served(config, workdir / "env", workdir / "sess2.sock", python)
    try:
        client = served.client
        sequential(client, BODY, 200)  # the default instance and a worker exist already
        before_rss = served.rss_kib()
        many = 1000
        started = time.perf_counter()
        ids = [
            client.post("/sessions", json.dumps({"kwargs": {"seed": i}}).encode(), None).json()[
                "session"
            ]
            for i in range(many)
        ]
        opened_in = time.perf_counter() - started
        per_session = (served.rss_kib() - before_rss) / many
        answers = [client.post("/call", session_call(s), None).status_code for s in ids]
        listed = len(client.get("/sessions").json()["sessions"])
        rows.append(
            (
                f"{many} sessions open at once: open time; listed; answering",
                {name: f"{opened_in:.2f} s; {listed}; {answers.count(200)}"},
            )
        )
        rows.append(
            ("memory per idle session (RSS delta / 1000)", {name: f"{per_session:.1f} KiB"})
        )
        modes = [
            ("256 in flight on 256 sessions", [session_call(s) for s in ids[:256]]),
            ("256 in flight on one session", [session_call(ids[0])]),
            ("256 in flight, no session", [BODY]),
        ]
        runs: Dict[str, List[Tuple[float, List[float]]]] = {what: [] for what, _ in modes}
        for block in range(2 if quick else 6):  # rotating, so machine noise hits all alike
            for what, bodies in modes[block % 3 :] + modes[: block % 3]:
                runs[what].append(asyncio.run(in_flight(served.endpoint, bodies, 2 * calls, 256)))
        for what, _ in modes:
            rows += rate_rows(what, {name: runs[what]})
    finally:
        served.stop()
    return rows


def session_call(session: str) -> bytes:
    return json.dumps({"method": "echo", "args": [1], "session": session}).encode()


def print_table(rows: List[Row], names: List[str]) -> None:
    width = max(len(what) for what, _ in rows)
    cells = {n: max([len(n)] + [len(v.get(n, "")) for _, v in rows]) for n in names}
    print(
        f"| {'measurement'.ljust(width)} | " + " | ".join(n.ljust(cells[n]) for n in names) + " |"
    )
    print(f"|{'-' * (width + 2)}|" + "|".join("-" * (cells[n] + 2) for n in names) + "|")
    for what, values in rows:
        line = " | ".join(values.get(n, "").ljust(cells[n]) for n in names)
        print(f"| {what.ljust(width)} | {line} |")


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls, for a smoke run")
    parser.add_argument("--old-ref", default="main", help="git ref of the 'before' server")
    parser.add_argument("--python", default=sys.executable, help="interpreter for the servers")
    parser.add_argument("--no-before", action="store_true", help="measure this tree only")
    options = parser.parse_args(argv)
    calls = 400 if options.quick else 2000
    blocks = 2 if options.quick else 4
    workdir = Path(tempfile.mkdtemp(prefix="rfb"))
    try:
        old = prepare(workdir, options.old_ref)
        configs = [] if options.no_before else [Config("before", old, "asyncio")]
        configs.append(Config("after", str(HERE / "src"), "asyncio"))
        if importlib.util.find_spec("uvloop") is not None:
            configs.append(Config("after+uvloop", str(HERE / "src"), "uvloop"))
        rows = calls_rows(
            configs, workdir, options.python, calls, blocks, 3 if options.quick else 9
        )
        rows += session_rows(
            configs[-1 if len(configs) < 3 else 1], workdir, options.python, calls, options.quick
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    load = os.getloadavg()[0]
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load:.1f}")
    print_table(rows, [c.name for c in configs])


if __name__ == "__main__":
    main()
