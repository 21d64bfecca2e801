"""The env author's edit loop, measured: rebuild after a one-line env.py edit, and dev mode.

    .venv/bin/python bench/authoring_edit_loop.py [--runtime docker] [--rounds 5]

Builds a 2-package environment (sympy + mpmath, installed offline from a
``wheels/`` directory that ``rayfine wheels`` fills on this host) three ways
and prints the median of ``--rounds`` edits for each:

* rebuild, default Dockerfile: requirements installed before the code is copied;
* rebuild, the old order (``COPY . /app`` then ``pip install``, as the default
  Dockerfile was): every edit reinstalls the requirements and the server;
* dev mode (``rayfine dev``): the time from saving env.py to the first call
  that answers with the new code (no build at all).

Images are tagged ``authoring-bench-*``; every container it starts is removed.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import rayfine_core as rf
from rayfine_core.build.builder import base_image
from rayfine_core.build.env_wheels import download_wheels
from rayfine_core.cli.dev import DevSession

ENV = """\
import sympy

VERSION = 0


class Actor:
    def solve(self, expr: str) -> str:
        return str(sympy.simplify(expr))

    def version(self) -> int:
        return VERSION
"""
OLD_ORDER = """\
ARG RAYFINE_BASE_IMAGE
FROM ${RAYFINE_BASE_IMAGE}
WORKDIR /app
COPY . /app
RUN PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --no-cache-dir --no-index \\
    --find-links wheels -r requirements.txt
"""


def make_env(root: Path, wheels: Path, dockerfile: str = "") -> Path:
    root.mkdir(parents=True)
    # A fresh line each run: the engine's cache must not remember an earlier run's edits.
    (root / "env.py").write_text(f"# bench run {time.time_ns()}\n" + ENV)
    (root / "requirements.txt").write_text("sympy==1.14.0\nmpmath==1.3.0\n")
    shutil.copytree(wheels, root / "wheels")
    if dockerfile:
        (root / "Dockerfile").write_text(dockerfile)
    return root


def edit(root: Path, version: int) -> None:
    text = (root / "env.py").read_text()
    start = text.index("VERSION = ")
    end = text.index("\n", start)
    (root / "env.py").write_text(text[:start] + f"VERSION = {version}" + text[end:])


def rebuilds(root: Path, tag: str, runtime: str, rounds: int) -> tuple[float, float]:
    started = time.perf_counter()
    rf.build_image_from_env(root, tag, runtime=runtime, quiet=True)
    first = time.perf_counter() - started
    times = []
    for version in range(1, rounds + 1):
        edit(root, version)
        started = time.perf_counter()
        rf.build_image_from_env(root, tag, runtime=runtime, quiet=True)
        times.append(time.perf_counter() - started)
    return first, statistics.median(times)


def dev_loop(root: Path, runtime: str, rounds: int) -> tuple[float, float, str]:
    """(dev image build + first start, median edit-to-live, how the change was applied)."""
    name = f"authoring-bench-dev-{int(time.time())}"
    session = DevSession(root, runtime, name, {}, False, None)
    started = time.perf_counter()
    session.start()
    first = time.perf_counter() - started
    watcher = threading.Thread(target=session.watch, args=(0.05,), daemon=True)
    watcher.start()
    times = []
    try:
        for version in range(100, 100 + rounds):
            time.sleep(0.5)  # the watcher has seen the previous state
            edit(root, version)
            started = time.perf_counter()
            while True:
                try:
                    with_new = rf.attach(name).version() == version
                except rf.errors.RayfineError:
                    with_new = False
                if with_new:
                    break
                if time.perf_counter() - started > 30:
                    raise TimeoutError("the edit never became live")
                time.sleep(0.02)
            times.append(time.perf_counter() - started)
    finally:
        session.stop()
        watcher.join(10)
    how = "server reload" if session.reloads else "container restart (server without reload)"
    return first, statistics.median(times), how


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", default="docker")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="authoring-bench-") as tmp:
        base = Path(tmp)
        seed = base / "seed"
        seed.mkdir()
        (seed / "requirements.txt").write_text("sympy==1.14.0\nmpmath==1.3.0\n")
        wheels = download_wheels(seed, base_image=base_image())[0].parent
        new = make_env(base / "new", wheels)
        old = make_env(base / "old", wheels, OLD_ORDER)
        dev = make_env(base / "dev", wheels)
        first_new, edit_new = rebuilds(new, "authoring-bench-new:latest", args.runtime, args.rounds)
        first_old, edit_old = rebuilds(old, "authoring-bench-old:latest", args.runtime, args.rounds)
        first_dev, live, how = dev_loop(dev, args.runtime, args.rounds)
    print(f"runtime {args.runtime}, median of {args.rounds} one-line env.py edits")
    print(f"{'':44} {'first':>8} {'per edit':>9}")
    print(f"{'rebuild, default Dockerfile (deps first)':44} {first_new:7.1f}s {edit_new:8.1f}s")
    print(f"{'rebuild, old order (COPY . then pip)':44} {first_old:7.1f}s {edit_old:8.1f}s")
    print(f"{'dev mode: edit -> live (' + how[:18] + ')':44} {first_dev:7.1f}s {live:8.2f}s")
    print(f"dev mode applied edits by {how}")


if __name__ == "__main__":
    main()
