"""Remove containers whose owning client process is gone.

A client killed with SIGKILL (or a crashed interpreter) cannot clean up.
Every container carries the owner's host, pid and process start time as
labels; the next Rayfine process on the same host (once per runtime) or
``rayfine stop --orphans`` removes the containers whose owner no longer
exists.  Containers without Rayfine's owner label, from other hosts, or
marked detached are never touched.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Optional

from . import labels
from .errors import RayfineError
from .runtime import Runtime
from .types import ContainerRecord

log = logging.getLogger("rayfine")
_reaped: set[str] = set()
_lock = threading.Lock()


def process_start_time(pid: int) -> Optional[float]:
    """When process ``pid`` started (Unix time, Linux /proc), or None if unknown/gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # field 22 of stat: starttime, in clock ticks after boot
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime")
        )
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def owner_alive(record: ContainerRecord) -> bool:
    """False only when the labels prove the owner process on this host is gone."""
    try:
        pid = int(record.labels.get(labels.PID, ""))
    except ValueError:
        return True  # not ours to judge
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    started = process_start_time(pid)
    try:
        recorded = float(record.labels.get(labels.PROCESS_START, ""))
    except ValueError:
        return True
    # A different start time means the pid was reused by an unrelated process.
    return started is None or abs(started - recorded) < 2.0


def orphans(runtime: Runtime) -> list[ContainerRecord]:
    """Rayfine containers on this host whose owner process is gone (never detached ones)."""
    here = socket.gethostname()
    return [
        record
        for record in runtime.list_containers({labels.OWNER: labels.OWNER_VALUE, labels.HOST: here})
        if record.labels.get(labels.DETACHED) != "1" and not owner_alive(record)
    ]


def reap(runtime: Runtime, socket_root: Optional[Path] = None) -> list[ContainerRecord]:
    """Stop and remove every orphan; return what was removed."""
    removed = []
    for record in orphans(runtime):
        try:
            runtime.stop(record.id, timeout=0)
        except RayfineError as exc:
            log.warning("rayfine: could not reap orphan %s: %s", record.name, exc)
            continue
        removed.append(record)
        env_id = record.labels.get(labels.ENV_ID, "")
        if socket_root is not None and env_id.isalnum():
            shutil.rmtree(socket_root / env_id, ignore_errors=True)
        log.info("rayfine: removed orphan container %s (its owner process is gone)", record.name)
    return removed


def reap_once(runtime: Runtime, socket_root: Optional[Path] = None) -> None:
    """Reap at most once per runtime per process, never failing the caller."""
    with _lock:
        if runtime.name in _reaped or os.environ.get("RAYFINE_NO_REAP") == "1":
            return
        _reaped.add(runtime.name)
    try:
        reap(runtime, socket_root)
    except Exception as exc:  # reaping is housekeeping: never block a start on it
        log.warning("rayfine: reaping orphans on %s failed: %s", runtime.name, exc)


def own_start_time() -> str:
    """This process's start time as stored in the ``rayfine.process_start`` label."""
    return str(process_start_time(os.getpid()) or time.time())
