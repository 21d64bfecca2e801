"""Who owns a container, and removing the containers whose owner process is gone.

Every container carries its owner's host, pid and process start time as
labels (:func:`owner_labels`).  A client killed with SIGKILL cannot clean
up, so the next Rayfine process on the same host reaps, in the background,
the containers whose owner no longer exists (once per runtime), and
``rayfine stop --orphans`` does it on demand.  Containers without Rayfine's
owner label, of another runtime, from other hosts, or marked detached are
never touched.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from ..errors import RayfineError
from . import labels
from .base import Runtime
from .types import ContainerRecord

log = logging.getLogger("rayfine")
_reaped: set[str] = set()
_lock = threading.Lock()
_identity: Optional[tuple[int, str]] = None


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


def own_start_time() -> str:
    """This process's start time as stored in the ``rayfine.process_start`` label.

    Computed per pid, so a forked child labels its containers as its own and
    is not mistaken for its (maybe dead) parent.
    """
    global _identity
    pid = os.getpid()
    if _identity is None or _identity[0] != pid:
        _identity = (pid, str(process_start_time(pid) or time.time()))
    return _identity[1]


def owner_labels(env_id: str, runtime: str) -> dict[str, str]:
    """Labels that mark a container as ours, name its runtime and the process that owns it."""
    return {
        labels.OWNER: labels.OWNER_VALUE,
        labels.RUNTIME: runtime,
        labels.ENV_ID: env_id,
        labels.PID: str(os.getpid()),
        labels.HOST: socket.gethostname(),
        labels.PROCESS_START: own_start_time(),
    }


def owned_by(runtime: str) -> dict[str, str]:
    """The label filter that selects every Rayfine container of ``runtime``."""
    return {labels.OWNER: labels.OWNER_VALUE, labels.RUNTIME: runtime}


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


Spare = Callable[[ContainerRecord], bool]
"""Says whether a container whose owner is gone must still be kept (e.g. it was detached)."""


def orphans(runtime: Runtime, spare: Optional[Spare] = None) -> list[ContainerRecord]:
    """Containers of ``runtime`` on this host whose owner process is gone (never detached ones)."""
    here = socket.gethostname()
    return [
        record
        for record in runtime.list_containers({**owned_by(runtime.name), labels.HOST: here})
        if record.labels.get(labels.DETACHED) != "1"
        and not owner_alive(record)
        and not (spare is not None and spare(record))
    ]


def reap(
    runtime: Runtime,
    forget: Optional[Callable[[ContainerRecord], None]] = None,
    spare: Optional[Spare] = None,
) -> list[ContainerRecord]:
    """Stop and remove every orphan of ``runtime``; return what was removed.

    :param forget: called for each removed container, to drop what the host
        kept for it (its run directory).
    :param spare: containers it says yes to are kept (detached ones without the label).
    """
    removed = []
    for record in orphans(runtime, spare):
        try:
            runtime.stop(record.id, timeout=0)
        except RayfineError as exc:
            log.warning("rayfine: could not reap orphan %s: %s", record.name, exc)
            continue
        removed.append(record)
        if forget is not None:
            forget(record)
        log.info("rayfine: removed orphan container %s (its owner process is gone)", record.name)
    return removed


def reap_in_background(
    runtime: Runtime,
    forget: Optional[Callable[[ContainerRecord], None]] = None,
    spare: Optional[Spare] = None,
) -> None:
    """Reap ``runtime``'s orphans once per process, in a daemon thread, never failing anyone.

    ``RAYFINE_NO_REAP=1`` turns it off.
    """
    if os.environ.get("RAYFINE_NO_REAP") == "1":
        return  # (any runtime: only containers labelled with this host and a dead pid here)
    with _lock:
        if runtime.name in _reaped:
            return
        _reaped.add(runtime.name)

    def run() -> None:
        try:
            reap(runtime, forget, spare)
        except Exception as exc:  # housekeeping: never disturb the caller
            log.warning("rayfine: reaping orphans on %s failed: %s", runtime.name, exc)

    threading.Thread(target=run, name=f"rayfine-reap-{runtime.name}", daemon=True).start()


def forget_after_fork() -> None:
    """In a forked child: this process has not reaped anything yet."""
    global _identity, _lock
    _lock = threading.Lock()  # a thread of the parent may have held it at fork time
    _reaped.clear()
    _identity = None
