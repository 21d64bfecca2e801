"""Rayfine's speed next to the same work done without Rayfine, measured in one run.

    .venv/bin/python bench/run.py            # about two minutes on 2 CPUs
    .venv/bin/python bench/run.py --quick    # fewer rounds, for a smoke test

Needs a running Docker engine (see scripts/bootstrap.sh).  It builds
``bench/envs/echo`` (methods that do no work, so only overhead is measured)
and prints one table: (a) cold start, (b) per-call latency and throughput
over a Unix socket and TCP, (c) 20 environments started at once, (d) an
unchanged rebuild, (e) a session against a fresh container per episode,
(f) gVisor against runc, (g) podman against docker.  The baseline of (a)-(c)
is the same image served the way affinetes serves an env: uvicorn + FastAPI
calling the Actor, no Rayfine.  Ratios are Rayfine's cost over the baseline's (for
rates: the baseline's rate over Rayfine's), so lower is better and 1.00x
means no overhead.  Every container it starts is removed on exit, Ctrl-C
and SIGTERM; traffic goes only to the containers it started.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import importlib.util
import os
import platform
import signal
import sys
import time
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import httpx
from baseline import (
    Bare,
    base_url,
    build_bare_image,
    start_bare,
    start_container,
    wait_until_ready,
)
from measure import (
    Row,
    Sample,
    ainterleaved,
    in_flight,
    interleaved,
    median_of,
    mib,
    print_table,
    rate,
    secs,
    sequential,
    us,
)

import rayfine_core as rf
from rayfine_core.aio import max_concurrent_starts
from rayfine_core.transport.client import AsyncClient, Client
from rayfine_core.transport.protocol import encode_call

ENV_DIR = HERE / "envs" / "echo"
IMAGE = "rayfine-bench-echo:latest"
BARE_IMAGE = "rayfine-bench-bare:latest"  # IMAGE plus FastAPI and uvicorn
BODY = encode_call("echo", [1], {}, None)
JSON = {"content-type": "application/json"}
BOOTSTRAP_BASE_IMAGE = "rayfine/python:3.11-bookworm"


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer rounds and calls (numbers get noisier)"
    )
    parser.add_argument("--envs", type=int, default=20, help="environments started at once in (c)")
    parser.add_argument("--width", type=int, default=64, help="calls in flight in (b)")
    parser.add_argument("--only", default="abcdefg", help="sections to run, e.g. --only c")
    args = parser.parse_args(argv)
    rounds, calls = (2, 400) if args.quick else (5, 2000)
    # SIGTERM ends the run through the finally below (Rayfine's own handler stops its containers first).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    docker = rf.get_runtime("docker").client
    _pick_base_image(docker)
    print(
        f"rayfine bench: {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()},"
        f" Docker {docker.version().get('Version')}, load average {_load()}",
        flush=True,
    )
    print(f"building {IMAGE} from {ENV_DIR.relative_to(HERE.parent)} (not timed) ...", flush=True)
    rf.build_image_from_env(ENV_DIR, IMAGE, quiet=True)
    build_bare_image(docker, IMAGE, BARE_IMAGE)
    tracked: list[Bare] = []
    rows: list[Row] = []
    bare_memory: Memory = (None, None)
    try:
        if "a" in args.only:
            rows += cold_start(docker, rounds, tracked)
        if "b" in args.only:
            call_rows, bare_memory = per_call(docker, calls, args.width, tracked)
            rows += call_rows
        if "c" in args.only:
            rows += many_starts(docker, args.envs, bare_memory, tracked)
        if "d" in args.only:
            rows += rebuild()
        if "e" in args.only:
            rows += sessions(rounds)
        if "f" in args.only:
            rows += gvisor(rounds, calls)
        if "g" in args.only:
            rows += podman(rounds, calls, args.width)
    finally:
        for bare in tracked:
            bare.stop()
        rf.cleanup_all_environments()
    print()
    print_table(rows)
    print(
        f"\nload average at the end: {_load()} (other work on this machine makes every number noisier)"
    )


def _pick_base_image(docker: Any) -> None:
    if "RAYFINE_BASE_IMAGE" not in os.environ and docker.images.list(name=BOOTSTRAP_BASE_IMAGE):
        os.environ["RAYFINE_BASE_IMAGE"] = BOOTSTRAP_BASE_IMAGE  # what scripts/bootstrap.sh made


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# -- (a) cold start ---------------------------------------------------------------------


def cold_start(docker: Any, rounds: int, tracked: list[Bare]) -> list[Row]:
    print(f"(a) cold start, {rounds} rounds ...", flush=True)
    runs: dict[str, list[float]] = {"rayfine": [], "fastapi": [], "asgi": []}
    for round_ in range(rounds + 1):  # round 0 warms caches (imports, page cache, orphan reaping)
        started = time.perf_counter()
        with rf.load_env(IMAGE) as env:
            env.echo(1)
            elapsed = time.perf_counter() - started
        runs["rayfine"].append(elapsed) if round_ else None
        for app in ("fastapi", "asgi"):
            started = time.perf_counter()
            bare = start_bare(docker, BARE_IMAGE, app, "unix", tracked)
            wait_until_ready(bare)
            first = Client(bare.endpoint).request("POST", "/call", BODY)
            elapsed = time.perf_counter() - started
            assert first.json() == {"result": 1}, first.content
            runs[app].append(elapsed) if round_ else None
            bare.stop()
            tracked.remove(bare)
    ours, fastapi, asgi = (median_of(runs[k]) for k in ("rayfine", "fastapi", "asgi"))
    return [
        Row(
            "(a)",
            "cold start: load_env -> first result",
            secs(ours),
            f"bare FastAPI app {secs(fastapi)}",
            ours / fastapi,
            "<= 1.3x",
            1.3,
        ),
        Row(
            "(a)",
            "  same, vs bare raw-ASGI app (floor)",
            secs(ours),
            f"bare ASGI app {secs(asgi)}",
            ours / asgi,
        ),
    ]


# -- (b) per-call latency -----------------------------------------------------------------


Memory = tuple[Optional[float], Optional[float]]


def per_call(docker: Any, calls: int, width: int, tracked: list[Bare]) -> tuple[list[Row], Memory]:
    print(
        f"(b) per call: {calls} sequential, {calls * 2} with {width} in flight, Unix socket and TCP ...",
        flush=True,
    )
    rows: list[Row] = []
    for transport in ("unix", "tcp"):
        bare = start_bare(docker, BARE_IMAGE, "fastapi", transport, tracked)
        wait_until_ready(bare)
        with rf.load_env(IMAGE, transport=transport) as env:
            rows += _compare_calls(env, bare, transport, calls, width, full=transport == "unix")
        if transport == "unix":
            bare_memory = _container_memory(docker, bare.container.id)
        bare.stop()
        tracked.remove(bare)
    return rows + _in_process_floor(calls), bare_memory


def _compare_calls(
    env: rf.Environment, bare: Bare, transport: str, calls: int, width: int, full: bool
) -> list[Row]:
    hx = httpx.Client(
        transport=httpx.HTTPTransport(uds=bare.endpoint.unix_socket),
        base_url=base_url(bare.endpoint),
    )
    lean = Client(bare.endpoint)
    assert hx.post("/call", content=BODY, headers=JSON).json() == {"result": 1} and env.echo(1) == 1
    variants = {
        "rayfine": lambda: env.echo(1),
        "httpx": lambda: hx.post("/call", content=BODY, headers=JSON),
        "lean": lambda: lean.request("POST", "/call", BODY),
        "sync method": lambda: env.echo_sync(1),
    }
    seq = interleaved(
        {k: (lambda f=f: sequential(f, calls // 8, warmup=20)) for k, f in variants.items()}
    )
    hx.close()
    lean.close()
    flight = asyncio.run(_in_flight_pair(transport, bare, calls * 2, width))
    t = "UDS" if transport == "unix" else "TCP"
    ours, raw = seq["rayfine"], seq["httpx"]
    ours_f, raw_f = flight["rayfine"], flight["httpx"]
    rows = [
        Row(
            "(b)",
            f"{t} sequential median",
            us(ours.median),
            f"httpx -> bare {us(raw.median)}",
            ours.median / raw.median,
            "<= 1.3x",
            1.3,
        )
    ]
    if full:
        rows += [
            Row(
                "(b)",
                f"{t} sequential p99",
                us(ours.p99),
                f"httpx -> bare {us(raw.p99)}",
                ours.p99 / raw.p99,
            ),
            Row(
                "(b)",
                f"{t} sequential calls/s",
                rate(ours.rate),
                f"httpx -> bare {rate(raw.rate)}",
                raw.rate / ours.rate,
            ),
            Row(
                "(b)",
                f"{t} sequential median, all Rayfine work",
                us(ours.median),
                f"Rayfine's bare HTTP client -> bare {us(seq['lean'].median)}",
                ours.median / seq["lean"].median,
            ),
            Row(
                "(b)",
                f"{t} sync method (worker thread) median",
                us(seq["sync method"].median),
                f"async method {us(ours.median)}",
                seq["sync method"].median / ours.median,
            ),
            Row(
                "(b)",
                f"{t} {width} in flight median",
                us(ours_f.median),
                f"httpx -> bare {us(raw_f.median)}",
                ours_f.median / raw_f.median,
            ),
            Row(
                "(b)",
                f"{t} {width} in flight p99",
                us(ours_f.p99),
                f"httpx -> bare {us(raw_f.p99)}",
                ours_f.p99 / raw_f.p99,
            ),
        ]
    rows.append(
        Row(
            "(b)",
            f"{t} {width} in flight calls/s",
            rate(ours_f.rate),
            f"httpx -> bare {rate(raw_f.rate)}",
            raw_f.rate / ours_f.rate,
            "<= 1.3x",
            1.3,
        )
    )
    if full:
        rows.append(
            Row(
                "(b)",
                f"{t} {width} in flight calls/s, all Rayfine work",
                rate(ours_f.rate),
                f"Rayfine's bare HTTP client -> bare {rate(flight['lean'].rate)}",
                flight["lean"].rate / ours_f.rate,
            )
        )
    return rows


async def _in_flight_pair(
    transport_name: str, bare: Bare, calls: int, width: int
) -> dict[str, Sample]:
    limits = httpx.Limits(max_connections=width * 2, max_keepalive_connections=width * 2)
    transport = httpx.AsyncHTTPTransport(uds=bare.endpoint.unix_socket, limits=limits)
    lean = AsyncClient(bare.endpoint)
    async with (
        rf.aload_env(IMAGE, transport=transport_name) as aenv,
        httpx.AsyncClient(transport=transport, base_url=base_url(bare.endpoint)) as hx,
    ):
        runs = {
            "rayfine": lambda: in_flight(lambda: aenv.echo(1), calls // 4, width),
            "httpx": lambda: in_flight(
                lambda: hx.post("/call", content=BODY, headers=JSON), calls // 4, width
            ),
            "lean": lambda: in_flight(
                lambda: lean.request("POST", "/call", BODY), calls // 4, width
            ),
        }
        try:
            return await ainterleaved(runs)
        finally:
            await lean.aclose()


def _in_process_floor(calls: int) -> list[Row]:
    spec = importlib.util.spec_from_file_location("rayfine_bench_env", ENV_DIR / "env.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    actor = module.Actor()
    floor = asyncio.run(in_flight(lambda: actor.echo(1), calls, 1))
    return [Row("(b)", "floor: same Actor method in process", "", f"in process {us(floor.median)}")]


# -- (c) many environments at once ----------------------------------------------------------


def many_starts(docker: Any, n: int, bare_memory: Memory, tracked: list[Bare]) -> list[Row]:
    bound = max_concurrent_starts()
    print(
        f"(c) {n} environments started at once, at most {bound} at a time (RAYFINE_MAX_CONCURRENT_STARTS) ...",
        flush=True,
    )
    one, many, stop, memory = asyncio.run(_many_starts(docker, n))
    bare_many = _bare_many(docker, n, bound, tracked)
    engine_one, engine_many = _engine_floor(docker, n, bound, tracked)
    return [
        Row(
            "(c)",
            f"{n} concurrent starts -> first result on each",
            secs(many),
            f"one start {secs(one)}",
            many / one,
            "< 3x",
            3.0,
        ),
        Row(
            "(c)",
            "  same, vs as many bare containers",
            secs(many),
            f"{n} bare FastAPI {secs(bare_many)}",
            many / bare_many,
        ),
        Row(
            "(c)",
            f"  engine alone: {n} `sleep` containers vs one",
            secs(engine_many),
            f"one {secs(engine_one)}",
            engine_many / engine_one,
        ),
        Row(
            "(c)",
            "  container memory per env (engine stats)",
            mib(memory[0]),
            f"bare FastAPI {mib(bare_memory[0])}",
            None if None in (memory[0], bare_memory[0]) else memory[0] / bare_memory[0],
        ),
        Row(
            "(c)",
            "  server process RSS per env",
            mib(memory[1]),
            f"bare FastAPI {mib(bare_memory[1])}",
            None if None in (memory[1], bare_memory[1]) else memory[1] / bare_memory[1],
        ),
        Row("(c)", f"  cleanup of all {n}", secs(stop)),
    ]


async def _many_starts(docker: Any, n: int) -> tuple[float, float, float, Memory]:
    singles = []
    for _ in range(3):
        started = time.perf_counter()
        async with rf.aload_env(IMAGE) as env:
            await env.echo(1)
            singles.append(time.perf_counter() - started)
    started = time.perf_counter()
    envs = await rf.aload_envs(IMAGE, n)
    try:
        await asyncio.gather(*(env.echo(1) for env in envs))
        many = time.perf_counter() - started
        measured = [
            await asyncio.to_thread(_container_memory, docker, env.handle.id) for env in envs
        ]
    finally:
        stopping = time.perf_counter()
        await asyncio.gather(*(env.cleanup() for env in envs))
        stop = time.perf_counter() - stopping
    memory = tuple(_mean([m[i] for m in measured]) for i in range(2))
    return median_of(singles), many, stop, memory  # type: ignore[return-value]


def _bare_many(docker: Any, n: int, bound: int, tracked: list[Bare]) -> float:
    """``n`` bare containers started by ``bound`` threads, each until its first response."""

    def one() -> None:
        bare = start_bare(docker, BARE_IMAGE, "fastapi", "unix", tracked)
        wait_until_ready(bare)
        Client(bare.endpoint).request("POST", "/call", BODY)

    return _batch(one, n, bound, tracked)


def _engine_floor(docker: Any, n: int, bound: int, tracked: list[Bare]) -> tuple[float, float]:
    """How the engine alone scales: containers that only sleep, one, then ``n`` by ``bound`` threads."""

    def one() -> None:
        start_container(docker, IMAGE, ["sleep", "60"], tracked)

    return median_of([_batch(one, 1, bound, tracked) for _ in range(3)]), _batch(
        one, n, bound, tracked
    )


def _batch(start_one: Any, n: int, bound: int, tracked: list[Bare]) -> float:
    """Seconds for ``n`` calls of ``start_one`` on ``bound`` threads; then remove what they started."""
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(bound) as pool:
        for future in [pool.submit(start_one) for _ in range(n)]:
            future.result()
    took = time.perf_counter() - started
    with concurrent.futures.ThreadPoolExecutor(bound) as pool:
        list(pool.map(Bare.stop, tracked))
    tracked.clear()
    return took


def _container_memory(docker: Any, container_id: str) -> Memory:
    """Working-set memory as ``docker stats`` shows it, and the RSS of the container's main process."""
    stats = docker.api.stats(container_id, stream=False, one_shot=True).get("memory_stats", {})
    inactive = stats.get("stats", {}).get(
        "total_inactive_file", stats.get("stats", {}).get("inactive_file", 0)
    )
    usage = stats.get("usage") - inactive if stats.get("usage") else None
    rss = None
    try:
        pid = docker.api.inspect_container(container_id)["State"]["Pid"]
        status = Path(f"/proc/{pid}/status").read_text()
        rss = next(
            int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmRSS:")
        )
    except (OSError, StopIteration, KeyError, ValueError):
        pass  # the engine runs elsewhere (a VM, rootless): only the engine's number
    return usage, rss


def _mean(values: list[Optional[float]]) -> Optional[float]:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


# -- (d) rebuild ---------------------------------------------------------------------------------


def rebuild() -> list[Row]:
    print("(d) rebuild of the unchanged environment ...", flush=True)
    runs, said = [], []
    for _ in range(3):
        started = time.perf_counter()
        rf.build_image_from_env(ENV_DIR, IMAGE, on_output=said.append)
        runs.append(time.perf_counter() - started)
    skipped = all("up to date" in line for line in said)
    took = median_of(runs)
    return [
        Row(
            "(d)",
            "unchanged rebuild" + ("" if skipped else " (NOT skipped)"),
            secs(took),
            target="< 1 s",
            limit=1.0,
            value=took if skipped else float("inf"),
        )
    ]


# -- (e) sessions -------------------------------------------------------------------------------


def sessions(rounds: int, opens: int = 200) -> list[Row]:
    """A session opened in a running container, against a fresh container, per episode."""
    print(
        f"(e) sessions: {opens} opened -> first result -> closed in one container ...", flush=True
    )
    fresh = []
    for round_ in range(rounds + 1):
        started = time.perf_counter()
        with rf.load_env(IMAGE) as env:
            env.echo(1)
            fresh.append(time.perf_counter() - started) if round_ else None
    with rf.load_env(IMAGE, max_sessions=opens) as env:

        def episode() -> None:
            with env.session() as session:
                session.echo(1)

        sample = sequential(episode, opens, warmup=10)
    width = asyncio.run(_session_calls(opens, 2000))
    one = median_of(fresh)
    return [
        Row(
            "(e)",
            "session open -> first result -> close, median",
            us(sample.median),
            f"fresh container {secs(one)}",
            sample.median / one,
        ),
        Row("(e)", "  same, p99", us(sample.p99)),
        Row("(e)", f"  {opens} sessions open in one container, calls/s over all", rate(width.rate)),
    ]


async def _session_calls(opens: int, calls: int) -> Sample:
    """``calls`` calls spread over ``opens`` sessions held open at once, one in flight each."""
    async with rf.aload_env(IMAGE, max_sessions=opens) as env:
        held = await asyncio.gather(*(env.session() for _ in range(opens)))
        turn = iter(range(10**9))
        try:
            return await in_flight(lambda: held[next(turn) % opens].echo(1), calls, opens)
        finally:
            await asyncio.gather(*(session.close() for session in held))


# -- (f) gVisor ----------------------------------------------------------------------------------


def gvisor(rounds: int, calls: int) -> list[Row]:
    """isolation="gvisor" (runsc) against the default runc container, same image and engine."""
    print("(f) isolation='gvisor' vs the default runc container ...", flush=True)
    cold: dict[str, list[float]] = {"container": [], "gvisor": []}
    seq: dict[str, Sample] = {}
    try:
        for round_ in range(rounds + 1):
            for isolation in cold:
                started = time.perf_counter()
                with rf.load_env(IMAGE, isolation=isolation) as env:
                    env.echo(1)
                    cold[isolation].append(time.perf_counter() - started) if round_ else None
                    if round_ == rounds:
                        seq[isolation] = sequential(lambda e=env: e.echo(1), calls // 2, warmup=50)
    except rf.RayfineError as exc:
        return [Row("(f)", "gVisor", "n/a", f"not measured: {type(exc).__name__}: {exc}"[:90])]
    runc, runsc = median_of(cold["container"]), median_of(cold["gvisor"])
    return [
        Row(
            "(f)",
            "gVisor cold start -> first result",
            secs(runsc),
            f"runc {secs(runc)}",
            runsc / runc,
        ),
        Row(
            "(f)",
            "gVisor UDS sequential median",
            us(seq["gvisor"].median),
            f"runc {us(seq['container'].median)}",
            seq["gvisor"].median / seq["container"].median,
        ),
    ]


# -- (g) podman ----------------------------------------------------------------------------------


def podman(rounds: int, calls: int, width: int) -> list[Row]:
    """The podman runtime against the docker runtime, same env, same base image."""
    print("(g) podman runtime vs docker runtime ...", flush=True)
    try:
        rf.build_image_from_env(ENV_DIR, IMAGE, quiet=True, runtime="podman")
    except rf.RayfineError as exc:
        return [Row("(g)", "podman", "n/a", f"not measured: {type(exc).__name__}: {exc}"[:90])]
    cold: dict[str, list[float]] = {"podman": [], "docker": []}
    seq: dict[str, Sample] = {}
    wide: dict[str, Sample] = {}
    for round_ in range(rounds + 1):
        for runtime in cold:
            started = time.perf_counter()
            with rf.load_env(IMAGE, runtime=runtime) as env:
                env.echo(1)
                cold[runtime].append(time.perf_counter() - started) if round_ else None
                if round_ == rounds:
                    seq[runtime] = sequential(lambda e=env: e.echo(1), calls // 2, warmup=50)
                    wide[runtime] = asyncio.run(_wide(runtime, calls * 2, width))
    p, d = median_of(cold["podman"]), median_of(cold["docker"])
    return [
        Row("(g)", "podman cold start -> first result", secs(p), f"docker {secs(d)}", p / d),
        Row(
            "(g)",
            "podman UDS sequential median",
            us(seq["podman"].median),
            f"docker {us(seq['docker'].median)}",
            seq["podman"].median / seq["docker"].median,
        ),
        Row(
            "(g)",
            f"podman UDS {width} in flight calls/s",
            rate(wide["podman"].rate),
            f"docker {rate(wide['docker'].rate)}",
            wide["docker"].rate / wide["podman"].rate,
        ),
    ]


async def _wide(runtime: str, calls: int, width: int) -> Sample:
    async with rf.aload_env(IMAGE, runtime=runtime) as env:
        return await in_flight(lambda: env.echo(1), calls, width)


if __name__ == "__main__":
    main()
