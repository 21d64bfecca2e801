"""Pools' state for other processes: one small JSON file per live pool in the private run root.

A pool lives in the process that made it; ``rayfine pool status`` runs in
another.  So each pool writes its :class:`~.members.PoolStatus` (at most a
few times a second) to ``rundir.root()/pools/<pid>-<name>.json``, mode 0600
in the user's 0700 run root, and removes it when it closes.  A file whose
process is gone (SIGKILL) is stale: readers skip it and delete it.  Error
texts are cut to their first line: container logs stay out of it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Optional

from ..environment import rundir
from ..runtime.reaper import own_start_time, process_start_time
from .members import PoolStatus

MAX_ERROR = 300


def directory() -> Path:
    path = rundir.root() / "pools"
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    return path


def path_of(name: str, pid: Optional[int] = None) -> Path:
    return directory() / f"{pid or os.getpid()}-{name}.json"


def write(status: PoolStatus) -> None:
    """Replace this process's file for the pool (atomically: readers never see half of it)."""
    record: dict[str, Any] = dataclasses.asdict(status)
    if status.last_error:
        record["last_error"] = status.last_error.splitlines()[0][:MAX_ERROR]
    record["pid"] = os.getpid()
    record["process_start"] = own_start_time()
    target = path_of(status.name)
    temporary = target.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(record, out)
    os.replace(temporary, target)


def remove(name: str) -> None:
    path_of(name).unlink(missing_ok=True)


def read_all() -> list[dict[str, Any]]:
    """The records of live pools of this user, oldest process first; stale files are deleted."""
    found = []
    for path in sorted(directory().glob("*.json")):
        try:
            record = json.loads(path.read_text())
            alive = _alive(int(record["pid"]), str(record["process_start"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being replaced, or not ours to read
        if alive:
            found.append(record)
        else:
            path.unlink(missing_ok=True)
    return found


def _alive(pid: int, started: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    now = process_start_time(pid)
    try:
        return now is None or abs(now - float(started)) < 2.0  # a reused pid is another process
    except ValueError:
        return True
