"""Timing loops and the result table of the benchmark (no containers here)."""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Optional


@dataclass
class Sample:
    """Latencies of one run of calls (seconds) and its throughput."""

    latencies: list[float]
    wall: float

    @property
    def median(self) -> float:
        return statistics.median(self.latencies)

    @property
    def p99(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.wall


def sequential(call: Callable[[], Any], n: int, warmup: int = 100) -> Sample:
    for _ in range(warmup):
        call()
    latencies = []
    started = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - t)
    return Sample(latencies, time.perf_counter() - started)


async def in_flight(
    call: Callable[[], Awaitable[Any]], n: int, width: int, warmup: int = 200
) -> Sample:
    """``n`` calls, ``width`` of them in flight at any time."""

    async def worker(count: int, out: list[float]) -> None:
        for _ in range(count):
            t = time.perf_counter()
            await call()
            out.append(time.perf_counter() - t)

    await asyncio.gather(*(worker(warmup // width + 1, []) for _ in range(width)))
    latencies: list[float] = []
    started = time.perf_counter()
    await asyncio.gather(*(worker(n // width, latencies) for _ in range(width)))
    return Sample(latencies, time.perf_counter() - started)


def interleaved(runs: dict[str, Callable[[], Sample]], blocks: int = 8) -> dict[str, Sample]:
    """Run each variant in ``blocks`` short blocks, rotating their order, so that
    noise from other work on the machine (and position in the cycle) hits all alike."""
    parts: dict[str, list[Sample]] = {name: [] for name in runs}
    for name in _rotations(list(runs), blocks):
        parts[name].append(runs[name]())
    return {name: _joined(samples) for name, samples in parts.items()}


async def ainterleaved(
    runs: dict[str, Callable[[], Awaitable[Sample]]], blocks: int = 4
) -> dict[str, Sample]:
    """:func:`interleaved` for variants that are coroutines."""
    parts: dict[str, list[Sample]] = {name: [] for name in runs}
    for name in _rotations(list(runs), blocks):
        parts[name].append(await runs[name]())
    return {name: _joined(samples) for name, samples in parts.items()}


def _rotations(names: list[str], blocks: int) -> list[str]:
    return [
        name
        for block in range(blocks)
        for name in names[block % len(names) :] + names[: block % len(names)]
    ]


def _joined(samples: list[Sample]) -> Sample:
    return Sample([x for s in samples for x in s.latencies], sum(s.wall for s in samples))


def median_of(runs: list[float]) -> float:
    return statistics.median(runs)


@dataclass
class Row:
    section: str
    what: str
    rayfine: str
    baseline: str = ""
    ratio: Optional[float] = None
    target: str = ""
    limit: Optional[float] = None
    """The ratio (or, with no baseline, the value) must stay at or below this."""
    value: Optional[float] = None

    @property
    def verdict(self) -> str:
        if self.limit is None:
            return ""
        measured = self.ratio if self.ratio is not None else self.value
        if measured is None:
            return "n/a"
        return "yes" if measured <= self.limit else "NO"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f} µs" if seconds >= 1e-5 else f"{seconds * 1e6:.2f} µs"


def secs(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds >= 0.1 else f"{seconds * 1e3:.0f} ms"


def rate(per_second: float) -> str:
    return f"{per_second:,.0f}/s"


def mib(n_bytes: Optional[float]) -> str:
    return "n/a" if n_bytes is None else f"{n_bytes / 2**20:.1f} MiB"


def _ratio(ratio: Optional[float]) -> str:
    if ratio is None:
        return ""
    return f"{ratio:.2f}x" if ratio >= 0.01 else f"1/{1 / ratio:,.0f}"


def print_table(rows: list[Row]) -> None:
    headers = ("measurement", "rayfine", "baseline", "ratio", "target", "met")
    cells = [
        (
            f"{r.section} {r.what}",
            r.rayfine,
            r.baseline,
            _ratio(r.ratio),
            r.target,
            r.verdict,
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(line.format(*headers))
    print(line.format(*("-" * w for w in widths)))
    for c in cells:
        print(line.format(*c))
