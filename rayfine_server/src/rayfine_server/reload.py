"""Development reload (``RAYFINE_RELOAD=1``): notice edits in the env directory.

A thread polls file sizes and modification times every
:data:`POLL_SECONDS` (no inotify, no dependencies) and, when anything
changed, calls back on the event loop, which re-imports env.py.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from pathlib import Path
from typing import Callable, Dict, Tuple

POLL_SECONDS = 0.3
MAX_FILES = 10_000
"""Files looked at per scan at most: a data directory must not make polling expensive."""
_SKIPPED_DIRS = frozenset({"__pycache__", ".git", ".venv", "venv", "node_modules", ".mypy_cache"})

Snapshot = Dict[str, Tuple[int, int]]


def snapshot(root: Path) -> Snapshot:
    """``{path: (mtime_ns, size)}`` for the files under ``root`` (hidden and cache dirs skipped)."""
    found: Snapshot = {}
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = [d for d in subdirs if d not in _SKIPPED_DIRS and not d.startswith(".")]
        for name in files:
            if name.endswith((".pyc", ".swp", "~")):
                continue
            path = os.path.join(directory, name)
            try:
                info = os.stat(path)
            except OSError:
                continue  # removed between listing and stat
            found[path] = (info.st_mtime_ns, info.st_size)
            if len(found) >= MAX_FILES:
                return found
    return found


def forget_modules(root: Path) -> None:
    """Drop ``env`` and every module loaded from ``root`` so the next import re-reads them."""
    prefix = str(root.resolve()) + os.sep
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None) or ""
        if name == "env" or path.startswith(prefix):
            del sys.modules[name]


class Watcher:
    """Calls ``on_change`` on the event loop whenever a file under ``root`` changes.

    :param root: the env directory.
    :param on_change: called on the loop; a new change while it runs calls it again after.
    """

    def __init__(self, root: Path, on_change: Callable[[], None]) -> None:
        self._root = root
        self._on_change = on_change
        self._loop = asyncio.get_running_loop()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="rayfine-reload", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _poll(self) -> None:
        seen = snapshot(self._root)
        while not self._stopped.wait(POLL_SECONDS):
            now = snapshot(self._root)
            if now != seen:
                seen = now
                try:
                    self._loop.call_soon_threadsafe(self._on_change)
                except RuntimeError:  # the loop is closed: the server stopped
                    return
