"""Warm pools and replica sets next to cold starts, measured in one run on one machine.

    .venv/bin/python bench/pool_bench.py                 # everything; (r) runs --duration s per variant
    .venv/bin/python bench/pool_bench.py --quick         # a smoke run: short, fewer samples
    .venv/bin/python bench/pool_bench.py --only pqt      # chosen sections

Sections (Docker, the kitchen-sink test environment, ``RAYFINE_BASE_IMAGE``
defaulting to the image scripts/bootstrap.sh makes):

(p) acquire -> first result from a warm pool of 8, p50 and p99 (fresh environment per
    episode; and reused with ``reset=``)
(q) 20 concurrent acquires from a pool of 20 -> first result on each, vs one acquire
    (and, for reference, how long the pool of 20 took to fill)
(r) episodes per minute over ``--duration`` seconds: a pool of 8 vs a cold start per
    episode, with one trainer loop and with 8 (``--loops``); an episode is ``--calls``
    calls and ``--episode-seconds`` of waiting inside the environment
(s) environments running and answering at once: batches of ``--step`` until a start
    or a call fails, ``--max-envs`` is reached, or less than ``--reserve-gib`` of memory is
    left for the rest of the machine; memory per environment from cgroup and from the host
(t) calls/s with 64 in flight: ``replicas=4`` vs one container

Ratios are the pool's cost over the baseline's (for rates: the baseline's rate over
the pool's), so lower is better.  Every container is removed on exit, Ctrl-C and
SIGTERM.  Other work on the machine makes every number noisier: the load average is
printed at the start and the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from measure import Row, in_flight, print_table, rate

import rayfine_core as rf
from rayfine_core.testing.envs import ENVS

IMAGE = "pools-bench-kitchen:latest"
VARIANTS: dict[str, dict[str, Any]] = {
    "fresh env per episode": {},
    "fresh, warmed (reset=, max_uses=1)": {"reset": "counter", "max_uses": 1},
    "reused (reset=)": {"reset": "counter"},
}
"""Pool settings compared in (p) and (q): ``counter`` is the kitchen sink's no-argument method."""
BOOTSTRAP_BASE_IMAGE = "rayfine/python:3.11-bookworm"


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs, fewer samples")
    parser.add_argument("--only", default="pqrst", help="sections to run, e.g. --only pq")
    parser.add_argument("--runtime", default="docker", help="runtime (default: docker)")
    parser.add_argument(
        "--duration", type=float, default=300.0, help="seconds per variant in (r) (default 300)"
    )
    parser.add_argument("--calls", type=int, default=10, help="calls per episode in (r)")
    parser.add_argument(
        "--episode-seconds", type=float, default=0.5, help="waiting per episode in (r)"
    )
    parser.add_argument(
        "--loops",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1, 8],
        help="trainer loops in (r), e.g. 1,8",
    )
    parser.add_argument("--step", type=int, default=25, help="environments per batch in (s)")
    parser.add_argument("--max-envs", type=int, default=300, help="bound of (s)")
    parser.add_argument(
        "--reserve-gib", type=float, default=4.0, help="(s) stops when less memory is available"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.duration = min(args.duration, 20.0)
        args.max_envs = min(args.max_envs, 50)
    os.environ.setdefault("RAYFINE_BASE_IMAGE", BOOTSTRAP_BASE_IMAGE)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the finally blocks clean up
    runtime = rf.get_runtime(args.runtime)
    print(
        f"rayfine pool bench: {platform.node()}, {os.cpu_count()} CPUs,"
        f" Python {platform.python_version()}, {args.runtime} {runtime.version()},"
        f" load average {_load()}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as env_dir:
        (Path(env_dir) / "env.py").write_text(str(ENVS["kitchen-sink"]))
        print(f"building {IMAGE} (not timed) ...", flush=True)
        rf.build_image_from_env(env_dir, IMAGE, quiet=True, runtime=args.runtime)
    rows: list[Row] = []
    notes: list[str] = []
    started = time.monotonic()
    try:
        if "p" in args.only:
            rows += acquire_latency(args, samples=48 if args.quick else 200)
        if "q" in args.only:
            rows += asyncio.run(concurrent_acquires(args, rounds=2 if args.quick else 5))
        if "t" in args.only:
            rows += asyncio.run(replica_throughput(args, calls=1000 if args.quick else 6000))
        if "r" in args.only:
            rows += episodes(args)
        if "s" in args.only:
            capacity_rows, note = asyncio.run(capacity(args))
            rows += capacity_rows
            notes.append(note)
    finally:
        left = rf.cleanup_all_environments()
        if left:
            print(f"removed {left} environments left by an interrupted section", flush=True)
    print()
    print_table(rows)
    for note in notes:
        print(note)
    print(
        f"\n{time.monotonic() - started:.0f} s; load average at the end: {_load()}"
        " (other work on this machine makes every number noisier)"
    )


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def _p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def _settle(status: Callable[[], rf.PoolStatus], size: int, timeout: float = 600) -> None:
    """Wait until the pool is full and quiet (no starts, no stops): a warm pool at rest."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = status()
        if s.ready >= size and s.starting == 0 and s.stopping == 0:
            time.sleep(1.0)  # let the engine's own bookkeeping finish too
            return
        time.sleep(0.1)
    raise TimeoutError(f"the pool did not settle: {status()}")


# -- (p) acquire -> first result ---------------------------------------------------------------


def acquire_latency(args: argparse.Namespace, samples: int) -> list[Row]:
    print(f"(p) acquire -> first result, {samples} episodes from a pool of 8 ...", flush=True)
    rows = []
    for label, variant in VARIANTS.items():
        latencies: list[float] = []
        with rf.load_pool(
            IMAGE, 8, runtime=args.runtime, name=f"bench-p-{len(rows)}", **variant
        ) as pool:
            while len(latencies) < samples:
                _settle(pool.status, 8)
                for _ in range(8):  # a burst: the refills run meanwhile, as in a trainer
                    t = time.perf_counter()
                    env = pool.acquire(timeout=300)
                    env.add(1)
                    latencies.append(time.perf_counter() - t)
                    pool.release(env)
        p50, p99 = statistics.median(latencies), _p99(latencies)
        rows.append(
            Row(
                "(p)",
                f"acquire -> first result, p50, {label}",
                _ms(p50),
                target="< 20 ms",
                limit=0.020,
                value=p50,
            )
        )
        rows.append(
            Row(
                "(p)",
                f"acquire -> first result, p99, {label}",
                _ms(p99),
                target="< 50 ms",
                limit=0.050,
                value=p99,
            )
        )
    return rows


# -- (q) 20 concurrent acquires --------------------------------------------------------------------


async def concurrent_acquires(args: argparse.Namespace, rounds: int, n: int = 20) -> list[Row]:
    print(f"(q) {n} concurrent acquires vs one, {rounds} rounds ...", flush=True)
    rows = await _floor(args, rounds, n)
    for label, variant in list(VARIANTS.items())[:2]:
        t = time.perf_counter()
        pool = await rf.aload_pool(IMAGE, n, runtime=args.runtime, name="bench-q", **variant)
        fill = time.perf_counter() - t
        singles: list[float] = []
        groups: list[float] = []
        try:

            async def episode_start(pool: rf.AsyncPool = pool) -> rf.AsyncEnvironment:
                env = await pool.acquire(timeout=300)
                await env.add(1)
                return env

            for _ in range(rounds):
                await asyncio.to_thread(_settle, pool.status, n)
                t = time.perf_counter()
                env = await episode_start()
                singles.append(time.perf_counter() - t)
                pool.release(env)
                await asyncio.to_thread(_settle, pool.status, n)
                t = time.perf_counter()
                envs = await asyncio.gather(*(episode_start() for _ in range(n)))
                groups.append(time.perf_counter() - t)
                for env in envs:
                    pool.release(env)
        finally:
            await pool.close()
        one, many = statistics.median(singles), statistics.median(groups)
        rows.append(
            Row(
                "(q)",
                f"{n} concurrent acquires -> first result on each, {label}",
                _ms(many),
                f"one acquire {_ms(one)}",
                many / one,
                "< 3x",
                limit=3.0,
            )
        )
        rows.append(Row("(q)", f"pool of {n} filled from empty, {label}", f"{fill:.2f} s"))
    return rows


async def _floor(args: argparse.Namespace, rounds: int, n: int) -> list[Row]:
    """The same work without a pool: a health request and a first call on each of ``n``
    environments started (and called once) beforehand: what the CPUs allow."""
    envs = await rf.aload_envs(IMAGE, n, runtime=args.runtime, progress=False)
    singles: list[float] = []
    groups: list[float] = []
    try:
        await asyncio.gather(*(env.add(1) for env in envs))

        async def probe_and_call(env: rf.AsyncEnvironment) -> None:
            await env.is_ready()
            await env.add(1)

        for i in range(rounds):
            await asyncio.sleep(1.0)
            t = time.perf_counter()
            await probe_and_call(envs[i % n])
            singles.append(time.perf_counter() - t)
            await asyncio.sleep(1.0)
            t = time.perf_counter()
            await asyncio.gather(*(probe_and_call(env) for env in envs))
            groups.append(time.perf_counter() - t)
    finally:
        await asyncio.gather(*(env.cleanup() for env in envs), return_exceptions=True)
    one, many = statistics.median(singles), statistics.median(groups)
    return [
        Row(
            "(q)",
            f"floor: no pool, {n} started envs, health request + call on each",
            _ms(many),
            f"on one {_ms(one)}",
            many / one,
        )
    ]


# -- (r) episodes per minute ----------------------------------------------------------------------


def episodes(args: argparse.Namespace) -> list[Row]:
    duration, calls, work = args.duration, args.calls, args.episode_seconds
    print(
        f"(r) episodes per minute, {duration:g} s per variant; an episode is {calls} calls and"
        f" {work:g} s of waiting in the environment ...",
        flush=True,
    )
    rows = []
    per_min = 60.0 / duration
    for loops in args.loops:
        waits: list[float] = []
        with rf.load_pool(IMAGE, 8, runtime=args.runtime, name="bench-r") as pool:
            pooled = _loop(duration, loops, lambda w=waits: _pool_episode(pool, calls, work, w))
        cold = _loop(duration, loops, lambda: _cold_episode(args.runtime, calls, work))
        what = "one trainer loop" if loops == 1 else f"{loops} trainer loops"
        rows.append(
            Row(
                "(r)",
                f"episodes/min, pool of 8, {what}",
                f"{pooled * per_min:.0f}/min",
                f"cold start per episode {cold * per_min:.0f}/min",
                cold / pooled,
                "pool > cold",
            )
        )
        rows.append(
            Row(
                "(r)",
                f"acquire wait, {what}, p50 / p99",
                f"{_ms(statistics.median(waits))} / {_ms(_p99(waits))}",
            )
        )
    return rows


def _pool_episode(pool: rf.Pool, calls: int, work: float, waits: list[float]) -> None:
    t = time.perf_counter()
    with pool.env(timeout=300) as env:
        waits.append(time.perf_counter() - t)
        _episode_work(env, calls, work)


def _cold_episode(runtime: str, calls: int, work: float) -> None:
    with rf.load_env(IMAGE, runtime=runtime) as env:
        _episode_work(env, calls, work)


def _episode_work(env: rf.Environment, calls: int, work: float) -> None:
    for _ in range(calls):
        env.add(1)
    if work:
        env.sleep(work)  # the environment waits (e.g. on a model) without using the CPU


def _loop(duration: float, workers: int, episode: Callable[[], None]) -> int:
    """Episodes finished by ``workers`` threads running ``episode`` for ``duration`` s."""
    done = [0] * workers
    failures: list[BaseException] = []
    end = time.monotonic() + duration

    def work(i: int) -> None:
        while time.monotonic() < end and not failures:
            try:
                episode()
            except Exception as exc:
                failures.append(exc)
                return
            done[i] += 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return sum(done)


# -- (s) capacity -------------------------------------------------------------------------------


def _available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def _cgroup_memory(container_id: str) -> tuple[Optional[int], Optional[int]]:
    """(usage, rss) bytes of a container's memory cgroup (v1 cgroupfs, or v2), if found."""
    v1 = Path("/sys/fs/cgroup/memory/docker") / container_id
    if v1.is_dir():
        usage = int((v1 / "memory.usage_in_bytes").read_text())
        stat = dict(line.split() for line in (v1 / "memory.stat").read_text().splitlines())
        return usage, int(stat.get("total_rss", stat.get("rss", 0)))
    for v2 in (
        Path("/sys/fs/cgroup/system.slice") / f"docker-{container_id}.scope",
        Path("/sys/fs/cgroup/docker") / container_id,
    ):
        if v2.is_dir():
            stat = dict(line.split() for line in (v2 / "memory.stat").read_text().splitlines())
            return int((v2 / "memory.current").read_text()), int(stat.get("anon", 0))
    return None, None


async def capacity(args: argparse.Namespace) -> tuple[list[Row], str]:
    print(
        f"(s) capacity: batches of {args.step} up to {args.max_envs}, keeping"
        f" {args.reserve_gib:g} GiB free ...",
        flush=True,
    )
    envs: list[rf.AsyncEnvironment] = []
    before = _available()
    reason = f"reached the bound of {args.max_envs}"
    memory: tuple[list[int], list[int]] = ([], [])
    host_per_env = 0.0
    cleanup = 0.0
    try:
        while len(envs) < args.max_envs:
            if _available() < args.reserve_gib * 2**30:
                reason = f"stopped with {_available() / 2**30:.1f} GiB available (--reserve-gib)"
                break
            batch = min(args.step, args.max_envs - len(envs))
            t = time.perf_counter()
            try:
                envs += await rf.aload_envs(IMAGE, batch, runtime=args.runtime, progress=False)
            except Exception as exc:
                reason = f"a start failed at {len(envs) + batch}: {type(exc).__name__}: {str(exc).splitlines()[0]}"
                break
            took = time.perf_counter() - t
            answers = await asyncio.gather(*(e.add(1) for e in envs), return_exceptions=True)
            silent = [a for a in answers if a != 3]
            print(
                f"    {len(envs)} running, last batch of {batch} in {took:.1f} s, all answering:"
                f" {not silent}, {_available() / 2**30:.1f} GiB available, load {_load()}",
                flush=True,
            )
            if silent:
                reason = f"{len(silent)} of {len(envs)} did not answer: {silent[0]!r}"
                break
        await asyncio.sleep(2)  # let memory settle after the last boot
        for env in envs:
            usage, rss = _cgroup_memory(env.handle.id)
            if usage is not None and rss is not None:
                memory[0].append(usage)
                memory[1].append(rss)
        host_per_env = (before - _available()) / max(1, len(envs))
    finally:
        t = time.perf_counter()
        outcomes = await asyncio.gather(*(e.cleanup() for e in envs), return_exceptions=True)
        cleanup = time.perf_counter() - t
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        if failed:  # the engine was too slow to answer: retried by the run's final cleanup
            print(f"    {len(failed)} cleanups failed at first: {failed[0]!r}", flush=True)
    count = len(envs)
    cgroup = (
        f"{statistics.mean(memory[0]) / 2**20:.1f} / {statistics.mean(memory[1]) / 2**20:.1f} MiB"
        if memory[0]
        else "n/a"
    )
    rows = [
        Row(
            "(s)",
            "environments running and answering at once",
            f"{count}",
            target=">= 200",
            limit=None,
        ),
        Row("(s)", "memory per env: cgroup usage / rss", cgroup),
        Row(
            "(s)",
            "memory per env: host MemAvailable drop (incl. engine shims)",
            f"{host_per_env / 2**20:.1f} MiB",
        ),
        Row("(s)", f"cleanup of all {count}", f"{cleanup:.1f} s"),
    ]
    return rows, f"(s) ended because it {reason}."


# -- (t) replicas throughput ------------------------------------------------------------------------


async def replica_throughput(args: argparse.Namespace, calls: int, width: int = 64) -> list[Row]:
    print(f"(t) calls/s with {width} in flight, {calls} calls: replicas=4 vs one ...", flush=True)
    async with rf.aload_env(IMAGE, runtime=args.runtime) as env:
        one = await in_flight(lambda: env.add(1), calls, width)
    async with rf.aload_replicas(IMAGE, 4, runtime=args.runtime, name="bench-t") as replicas:
        four = await in_flight(lambda: replicas.add(1), calls, width)
    return [
        Row(
            "(t)",
            f"calls/s, {width} in flight, replicas=4",
            rate(four.rate),
            f"one container {rate(one.rate)}",
            one.rate / four.rate,
        ),
        Row(
            "(t)",
            "same: median / p99 latency",
            f"{_ms(four.median)} / {_ms(four.p99)}",
            f"{_ms(one.median)} / {_ms(one.p99)}",
        ),
    ]


if __name__ == "__main__":
    main()
