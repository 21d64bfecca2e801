"""``rayfine dev``: run an environment from its directory, with edits live and no rebuild.

The directory is mounted read-only over ``/app`` of its *dev image* (the
dependencies and the server, without the code: see
:func:`~rayfine_core.build.builder.build_dev_image`).  The server runs with
``RAYFINE_RELOAD=1`` and re-imports env.py when it changes; a server that
does not announce reloading (``"reload": true`` in ``/health``, with a
``"generation"`` that changes with each import of env.py) gets its container
restarted instead.  A change to requirements.txt, wheels/ or the
Dockerfile rebuilds the dev image first.  The environment is recorded like
``rayfine run``'s, so ``rayfine call NAME ...`` and ``rayfine_core.attach(NAME)``
reach it from elsewhere while this command runs; Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any, Callable, Iterator, Optional

from .. import errors
from ..api import load_env
from ..build.builder import build_dev_image, dependency_inputs
from ..build.context import walk
from ..build.detect import inspect_env_dir
from ..environment.faces import Environment
from ..environment.statefiles import find
from ..plugins.manager import get_runtime
from ..transport.channel import Channel
from ..transport.protocol import decode_json
from ._util import (
    RAW,
    add_env_options,
    add_runtime_option,
    default_runtime,
    env_file_vars,
    from_host_env,
    positive_float,
    status,
)

POLL = 0.2
"""Seconds between looks at the directory (stdlib only: no inotify dependency)."""
SETTLE = 0.1
"""An editor writes a file in several steps; act once it has been still this long."""
RELOAD_WAIT = 10.0
"""Seconds to wait for a reloading server to answer again after a change."""
Snapshot = dict[Path, tuple[int, int]]


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    dev = sub.add_parser(
        "dev",
        parents=[common],
        formatter_class=RAW,
        help="run an environment from its directory; edits are live, no rebuild",
        description="Run ENV_DIR's env.py with the directory mounted read-only into a container\n"
        "of its dev image (dependencies + server, built once, rebuilt only when requirements.txt,\n"
        "wheels/ or the Dockerfile change). Saving env.py makes it live in about a second.\n"
        "The container's output is printed here; from another shell, call it with\n"
        "`rayfine call NAME METHOD --arg k=v` or rayfine_core.attach('NAME'). Ctrl-C stops it.",
    )
    dev.add_argument("env_dir", metavar="ENV_DIR", help="directory holding env.py")
    dev.add_argument("--name", help="container name (default: the directory's name)")
    add_env_options(dev)
    dev.add_argument("--eager", action="store_true", help="construct the Actor at every (re)start")
    dev.add_argument("--no-logs", action="store_true", help="do not print the container's output")
    dev.add_argument(
        "--poll", metavar="S", type=positive_float, default=POLL, help="seconds between checks"
    )
    add_runtime_option(dev)
    dev.set_defaults(func=cmd_dev)


def cmd_dev(args: argparse.Namespace) -> int:
    info = inspect_env_dir(args.env_dir)
    runtime = args.runtime or default_runtime()
    env_vars = env_file_vars(args.env_file)
    env_vars.update(from_host_env(args.env, "Environment variable"))
    session = DevSession(
        info.path,
        runtime,
        args.name or default_name(info.path),
        env_vars,
        args.eager,
        None if args.no_logs else _print_line,
    )
    previous = signal.signal(signal.SIGTERM, _interrupt)  # stop it like Ctrl-C does
    try:
        session.start()
        status(
            f"rayfine: dev: {session.name} serves {info.path} (edits are live); call it with"
            f" `rayfine call {session.name} METHOD --arg k=v`; Ctrl-C stops it"
        )
        session.watch(args.poll)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        session.stop()
    status(f"rayfine: dev: stopped {session.name}")
    return 0


def default_name(env_dir: Path) -> str:
    name = re.sub(r"[^a-zA-Z0-9_.-]", "-", env_dir.name).strip("-._")
    return name[:60] or "env"


def _interrupt(signum: int, frame: Optional[FrameType]) -> None:
    raise KeyboardInterrupt


def _print_line(line: str) -> None:
    sys.stdout.write(line)
    sys.stdout.flush()


class DevSession:
    """One dev environment: its container, its log pump, and what a change does to it."""

    def __init__(
        self,
        env_dir: Path,
        runtime: str,
        name: str,
        env_vars: dict[str, str],
        eager: bool,
        on_log: Optional[Callable[[str], None]],
    ) -> None:
        self.env_dir, self.runtime, self.name = env_dir, runtime, name
        self.env_vars, self.eager, self.on_log = env_vars, eager, on_log
        self.image = ""
        self.env: Optional[Environment] = None
        self.reloads = False
        self.generation: Any = None
        self._seen: Snapshot = {}
        self._stopped = threading.Event()

    # -- the container ------------------------------------------------------------------
    def start(self) -> None:
        """Build (or reuse) the dev image and start a container of it."""
        self._stopped.clear()
        self._seen = snapshot(self.env_dir)  # first: an edit made while starting is not missed
        self.image = build_dev_image(self.env_dir, self.runtime)
        self._launch()

    def _launch(self) -> None:
        self.env = load_env(
            self.image,
            container_name=self.name,
            env_vars=self.env_vars,
            runtime=self.runtime,
            eager=self.eager,
            dev=self.env_dir,
        )
        self.env.detach()  # recorded for `rayfine call NAME`; this command stops it
        health = self.health()
        self.reloads = bool(health.get("reload")) and "generation" in health
        self.generation = health.get("generation")
        if self.on_log is not None:
            pump = threading.Thread(
                target=self._pump, args=(self.env,), name="rayfine-dev-logs", daemon=True
            )
            pump.start()

    def _pump(self, env: Environment) -> None:
        assert self.on_log is not None
        try:
            for line in env.logs(tail=0, follow=True):
                self.on_log(line)
        except errors.RayfineError:
            pass  # the container went away: its successor has its own pump

    def stop(self, at_once: bool = False) -> None:
        """Stop the container: gracefully, or ``at_once`` (a restart: its state is thrown away
        anyway, and a graceful stop waits for the server to finish its connections)."""
        if not at_once:
            self._stopped.set()  # the watcher, if another thread runs it, ends
        env, self.env = self.env, None
        if env is None:
            return
        if at_once:
            get_runtime(self.runtime).stop(env.handle.id, timeout=0)
        env.cleanup()

    def restart(self) -> None:
        self.stop(at_once=True)
        self._launch()

    def health(self) -> dict[str, Any]:
        """The server's ``/health`` answer (``{}`` if it gives none)."""
        record = find(self.name, self.runtime)
        channel = Channel(record.endpoint, record.token)
        try:
            response = channel.client().request("GET", "/health", None, 5.0)
            body = decode_json(response.content)
        except (errors.RayfineError, ValueError):
            return {}
        finally:
            channel.close()
        if response.status_code != 200 and isinstance(body, dict):
            error = body.get("error") or {}
            raise errors.EnvLoadError(
                f"env.py failed to load: {error.get('type')}: {error.get('message')}",
                logs=str(error.get("traceback") or ""),
            )
        return body if isinstance(body, dict) else {}

    # -- the directory ------------------------------------------------------------------
    def watch(self, poll: float) -> None:
        """Apply each change of the directory until interrupted or stopped."""
        before = self._seen
        while not self._stopped.wait(poll):
            now = snapshot(self.env_dir)
            if now == before:
                continue
            now = settle(self.env_dir, now)
            changed = sorted(p for p in set(before) | set(now) if before.get(p) != now.get(p))
            before = now
            if not self._stopped.is_set():
                self.apply(changed)

    def apply(self, changed: list[Path]) -> None:
        """Make ``changed`` live: rebuild for dependencies, else reload or restart."""
        started = time.monotonic()
        shown = ", ".join(str(p.relative_to(self.env_dir)) for p in changed[:3])
        shown += f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        try:
            matters = dependency_inputs(self.env_dir)
            if any(matters(path) for path in changed):
                status(f"rayfine: dev: {shown} changed: rebuilding the dev image")
                self.image = build_dev_image(self.env_dir, self.runtime)
                self.restart()
                how = "rebuilt and restarted"
            elif self.env is not None and self.reloads:
                self._await_reload()
                how = "reloaded"
            else:
                self.restart()
                how = "restarted (this server does not reload in place)"
        except errors.RayfineError as exc:
            text = str(exc).strip()
            status(f"rayfine: dev: {shown} changed, and it does not run: {text}")
            status("rayfine: dev: fix it and save again")
            return
        status(f"rayfine: dev: {shown} changed: {how} in {time.monotonic() - started:.1f}s")

    def _await_reload(self) -> None:
        """Wait for the server to import the new code (its generation changes), or to fail to."""
        deadline = time.monotonic() + RELOAD_WAIT
        while True:
            health = self.health()  # raises EnvLoadError once the new code failed to import
            if health.get("generation") != self.generation:
                self.generation = health.get("generation")
                return
            if time.monotonic() > deadline:
                raise errors.StartTimeout(
                    f"{self.name} did not reload env.py within {RELOAD_WAIT:g}s of the change"
                )
            time.sleep(0.05)


def snapshot(root: Path) -> Snapshot:
    """Every file's modification time and size (what an edit changes)."""
    found: Snapshot = {}
    for path, info in _files(root):
        found[path] = (info.st_mtime_ns, info.st_size)
    return found


def _files(root: Path) -> Iterator[tuple[Path, os.stat_result]]:
    try:
        for path, info in walk(root):
            if not os.path.isdir(path):
                yield path, info
    except (OSError, errors.EnvDefinitionError):
        return  # a file vanished mid-walk, or a bad link appeared: look again next time


def settle(root: Path, current: Snapshot) -> Snapshot:
    """Wait until the directory stops changing (an editor's save is several writes)."""
    while True:
        time.sleep(SETTLE)
        again = snapshot(root)
        if again == current:
            return again
        current = again
