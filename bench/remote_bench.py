"""Remote mode's cost: the same call through a gateway on this host vs. straight over the Unix socket.

    .venv/bin/python bench/remote_bench.py [--runtime process|docker|podman] [--calls N] [--quick]

Builds ``bench/envs/echo`` on the runtime, starts ``rayfine serve`` on it
(a process of its own on 127.0.0.1: TLS with a self-signed, pinned
certificate, and once more over plain HTTP to show what TLS costs), then
measures ``env.echo(1)`` (a method doing no work) in three ways, interleaved
in blocks so that other load on the machine hits each alike:

* local: ``load_env(runtime=R)``, the client straight to the container's Unix socket;
* remote: ``load_env(mode="remote")`` through the gateway (HTTPS, then the
  gateway's pooled keep-alive connection to the same kind of container);
* remote, plain HTTP: the same without TLS.

Sequential median and p99, then calls/s with ``--width`` (256) calls in
flight from one asyncio client.  The target: remote under 1.5x local.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from measure import (
    Row,
    Sample,
    ainterleaved,
    in_flight,
    interleaved,
    print_table,
    rate,
    sequential,
    us,
)

import rayfine_core as rf

IMAGE = "rayfine-bench-remote-echo:latest"
TARGET = 1.5


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runtime", default="process", help="the gateway's runtime (and local's)")
    parser.add_argument("--calls", type=int, default=4000, help="sequential calls per variant")
    parser.add_argument("--width", type=int, default=256, help="calls in flight")
    parser.add_argument("--quick", action="store_true", help="a smoke run: few calls")
    args = parser.parse_args(argv)
    calls = 400 if args.quick else args.calls
    os.environ.setdefault("RAYFINE_BASE_IMAGE", "rayfine/python:3.11-bookworm")
    rf.build_image_from_env(HERE / "envs" / "echo", IMAGE, quiet=True, runtime=args.runtime)
    with tempfile.TemporaryDirectory(prefix="rayfine-remote-bench-") as tmp:
        with _gateway(Path(tmp), args.runtime, tls=True) as (url, token):
            with _gateway(Path(tmp), args.runtime, tls=False, name="bench-plain") as plain:
                rows = _measure(args.runtime, url, token, plain, calls, args.width)
    print(
        f"\nremote mode vs local, runtime {args.runtime}, echo(1), {calls} sequential calls each:\n"
    )
    print_table(rows)


def _measure(
    runtime: str, url: str, token: str, plain: tuple[str, str], calls: int, width: int
) -> list[Row]:
    with (
        rf.load_env(IMAGE, runtime=runtime) as local,
        rf.load_env(IMAGE, mode="remote", url=url, token=token) as remote,
        rf.load_env(IMAGE, mode="remote", url=plain[0], token=plain[1]) as bare,
    ):
        seq = interleaved(
            {
                "local": lambda: sequential(lambda: local.echo(1), calls // 8, warmup=20),
                "remote": lambda: sequential(lambda: remote.echo(1), calls // 8, warmup=20),
                "plain": lambda: sequential(lambda: bare.echo(1), calls // 8, warmup=20),
            }
        )
    wide = asyncio.run(_wide(runtime, url, token, plain, calls * 4, width))
    lo, re, pl = seq["local"], seq["remote"], seq["plain"]
    wl, wr, wp = wide["local"], wide["remote"], wide["plain"]
    target = f"< {TARGET}x"
    return [
        Row("seq", "median: remote (HTTPS) vs local (UDS)", us(re.median), us(lo.median), re.median / lo.median, target, TARGET),
        Row("seq", "p99: remote vs local", us(re.p99), us(lo.p99), re.p99 / lo.p99),
        Row("seq", "median: remote over plain HTTP vs local", us(pl.median), us(lo.median), pl.median / lo.median),
        Row("seq", "gateway's cost per call (median difference)", us(re.median - lo.median)),
        Row("seq", "TLS's share of it", us(re.median - pl.median)),
        Row(f"{width} in flight", "calls/s: remote vs local", rate(wr.rate), rate(wl.rate), wl.rate / wr.rate, target, TARGET),
        Row(f"{width} in flight", "median latency: remote vs local", us(wr.median), us(wl.median), wr.median / wl.median),
        Row(f"{width} in flight", "p99 latency: remote vs local", us(wr.p99), us(wl.p99), wr.p99 / wl.p99),
        Row(f"{width} in flight", "calls/s over plain HTTP", rate(wp.rate), rate(wl.rate), wl.rate / wp.rate),
    ]  # fmt: skip


async def _wide(
    runtime: str, url: str, token: str, plain: tuple[str, str], calls: int, width: int
) -> dict[str, Sample]:
    async with (
        rf.aload_env(IMAGE, runtime=runtime) as local,
        rf.aload_env(IMAGE, mode="remote", url=url, token=token) as remote,
        rf.aload_env(IMAGE, mode="remote", url=plain[0], token=plain[1]) as bare,
    ):
        runs = {
            "local": lambda: in_flight(lambda: local.echo(1), calls // 4, width),
            "remote": lambda: in_flight(lambda: remote.echo(1), calls // 4, width),
            "plain": lambda: in_flight(lambda: bare.echo(1), calls // 4, width),
        }
        return await ainterleaved(runs)


class _gateway:
    """``rayfine serve`` in a process of its own for the benchmark; (url, token) while it runs."""

    def __init__(self, work: Path, runtime: str, tls: bool, name: str = "bench") -> None:
        self._work, self._runtime, self._tls, self._name = work / name, runtime, tls, name
        self._process: Optional[subprocess.Popen[str]] = None

    def __enter__(self) -> tuple[str, str]:
        from rayfine_remote.gateway.tokens import add

        self._work.mkdir(parents=True)
        tokens_file = self._work / "tokens.json"
        token = add(tokens_file, "bench", {"images": ["rayfine-bench-*"], "max_envs": 8})
        command = [
            sys.executable, "-m", "rayfine_remote.gateway", "--runtime", self._runtime,
            "--tokens", str(tokens_file), "--name", f"{self._name}-{os.getpid()}", "--port", "0",
            "--state-dir", str(self._work / "state"), "--audit-log", str(self._work / "audit.log"),
        ]  # fmt: skip
        if not self._tls:
            command.append("--no-tls")
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if "ready: " not in line:
            raise SystemExit(f"the gateway did not start: {line!r}")
        return line.split("ready: ")[1].strip(), token

    def __exit__(self, *exc: Any) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGTERM)
            self._process.wait(60)


if __name__ == "__main__":
    main()
