"""Host-wide limits on environment starts, shared by every Rayfine process of one user.

Eight trainer processes on one host each asking for a hundred environments
must not make the engine create 800 containers at once.  So before the engine
is asked for a container, a start takes, in this order:

* a *running slot*, held until the environment is stopped
  (``RAYFINE_HOST_MAX_RUNNING``, default 1024; ``0``: no limit);
* a *start slot*, held until its server answers or the start fails
  (``RAYFINE_HOST_MAX_STARTS``, default twice the CPUs this process may use);
* a turn of the optional rate limit (``RAYFINE_HOST_START_RATE`` starts per
  second, spaced evenly; unset: no limit).

Slots are byte-range locks (``fcntl`` ``F_SETLK``) on one file per kind in the
user's private run root (``rundir.root()/limits``): slot *i* is byte *i*.  The
kernel drops a process's locks when it ends, however it ends (SIGKILL too),
so no slot is ever lost; locks are not inherited by ``fork()``, so a child
never holds its parent's slots; and one descriptor per kind holds all of a
process's slots, however many environments it runs.  Such locks are dropped
when the process closes *any* descriptor of the file, so only this module
opens these files, and it keeps them open.

A start that finds no slot waits (flow pauses: never blocking an event loop)
up to ``RAYFINE_HOST_WAIT`` seconds (default 300), then raises
:class:`~rayfine_core.errors.CapacityError` naming the limit, the processes
holding it and the variable that raises it.  Each process counts everyone's
slots against its own settings, so processes should agree on them.  A
restart after a container death keeps its running slot and takes no start
slot.  (Once the exit stop begins, the registry refuses new starts.)
"""

from __future__ import annotations

import fcntl
import os
import random
import struct
import threading
import time
from dataclasses import dataclass
from typing import Optional

from .. import errors
from . import rundir
from .steps import Flow, sleep

STARTS = "starts"
RUNNING = "running"
RATE = "rate"
MAX_STARTS_VARIABLE = "RAYFINE_HOST_MAX_STARTS"
MAX_RUNNING_VARIABLE = "RAYFINE_HOST_MAX_RUNNING"
START_RATE_VARIABLE = "RAYFINE_HOST_START_RATE"
WAIT_VARIABLE = "RAYFINE_HOST_WAIT"
DEFAULT_MAX_RUNNING = 1024
DEFAULT_WAIT = 300.0
POLL_FIRST, POLL_MAX = 0.005, 0.1
"""Pauses between attempts while every slot is taken (growing from the first to the last)."""
FULL_FOR = 0.05
"""After a scan found no free slot, other waiters in this process skip scanning this long."""
_FLOCK = "hhqqi"  # struct flock on Linux: l_type, l_whence, l_start, l_len, l_pid


@dataclass(frozen=True)
class HostLimits:
    """The limits in force (read from the environment on every start)."""

    max_starts: int
    max_running: int  # 0: no limit
    start_rate: float  # starts per second; 0: no limit
    wait: float


def current() -> HostLimits:
    """The limits set by ``RAYFINE_HOST_*`` (defaults where unset).

    :raises ValidationError: a variable is set to something unusable.
    """
    return HostLimits(
        max_starts=int(_number(MAX_STARTS_VARIABLE, 2 * _cpus(), minimum=1, whole=True)),
        max_running=int(_number(MAX_RUNNING_VARIABLE, DEFAULT_MAX_RUNNING, minimum=0, whole=True)),
        start_rate=_number(START_RATE_VARIABLE, 0.0, minimum=0.0),
        wait=_number(WAIT_VARIABLE, DEFAULT_WAIT, minimum=0.0),
    )


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _number(variable: str, default: float, minimum: float, whole: bool = False) -> float:
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if whole else float(raw)
    except ValueError:
        value = None
    if value is None or value < minimum or value != value:  # NaN
        kind = "a whole number" if whole else "a number"
        raise errors.ValidationError(f"{variable} must be {kind} >= {minimum:g}, got {raw!r}.")
    return float(value)


# -- what this process holds -------------------------------------------------------------------

_lock = threading.RLock()  # re-entrant: a signal handler may stop an environment in its holder
_files: dict[str, int] = {}  # lock file path -> descriptor, kept open (see the module doc)
_held: dict[int, set[int]] = {}  # descriptor -> slots this process holds in that file
_owners: dict[str, dict[str, tuple[int, int]]] = {}  # owner -> kind -> (descriptor, slot)
_full_until: dict[int, float] = {}  # descriptor -> skip scanning until (monotonic)
_admitting: set[str] = set()
_cancelled: set[str] = set()  # released while admit() waited: it must give up


def _file(kind: str) -> int:
    """The descriptor of the lock file of ``kind`` under the current run root, opened once."""
    directory = rundir.root() / "limits"
    path = str(directory / kind)
    fd = _files.get(path)
    if fd is None:
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            pass
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        fd = _files[path] = os.open(path, flags, 0o600)
        _held[fd], _full_until[fd] = set(), 0.0
    return fd


def _lock_byte(fd: int, index: int) -> bool:
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, index)
    except OSError:  # EAGAIN/EACCES: another process holds it
        return False
    return True


def _try_take(owner: str, kind: str, limit: int) -> bool:
    """Take a free slot of ``kind`` for ``owner`` if one of the first ``limit`` is free."""
    with _lock:
        if owner in _cancelled:
            raise errors.EnvironmentClosedError(
                f"Environment {owner} was cleaned up while it waited for a host-wide slot."
            )
        if kind in _owners.get(owner, {}):
            return True
        fd = _file(kind)
        if time.monotonic() < _full_until[fd]:
            return False
        held = _held[fd]
        first = random.randrange(limit)  # spread processes over the slots: fewer collisions
        for index in [*range(first, limit), *range(first)]:
            if index not in held and _lock_byte(fd, index):
                held.add(index)
                _owners.setdefault(owner, {})[kind] = (fd, index)
                return True
        _full_until[fd] = time.monotonic() + FULL_FOR
        return False


def _give_back(owner: str, kind: str) -> None:
    with _lock:
        taken = _owners.get(owner, {}).pop(kind, None)
        if not _owners.get(owner, True):
            del _owners[owner]
        if taken is None:
            return
        fd, index = taken
        _held[fd].discard(index)
        _full_until[fd] = 0.0  # a waiter here may take it at once
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, index)


# -- the three hooks a start goes through --------------------------------------------------------


def admit(owner: str) -> Flow[None]:
    """Wait for ``owner``'s running slot, start slot and rate-limit turn.

    :raises CapacityError: a limit stayed reached for ``RAYFINE_HOST_WAIT`` seconds.
    :raises ValidationError: a ``RAYFINE_HOST_*`` variable is malformed.
    """
    limits = current()
    deadline = time.monotonic() + limits.wait
    with _lock:
        _admitting.add(owner)
    try:
        if limits.max_running:
            yield from _take(owner, RUNNING, limits.max_running, deadline, limits)
        yield from _take(owner, STARTS, limits.max_starts, deadline, limits)
        if limits.start_rate:
            yield from _turn(limits, deadline)
        _try_take(owner, STARTS, limits.max_starts)  # raises if it was released meanwhile
    except BaseException:
        release(owner)
        raise
    finally:
        with _lock:
            _admitting.discard(owner)
            _cancelled.discard(owner)


def started(owner: str) -> None:
    """``owner``'s server answered (or its start ended): free its start slot."""
    _give_back(owner, STARTS)


def release(owner: str) -> None:
    """``owner`` was stopped: free all its slots."""
    with _lock:
        if owner in _admitting:
            _cancelled.add(owner)
        _give_back(owner, STARTS)
        _give_back(owner, RUNNING)


def _take(owner: str, kind: str, limit: int, deadline: float, limits: HostLimits) -> Flow[None]:
    delay = POLL_FIRST
    while not _try_take(owner, kind, limit):
        left = deadline - time.monotonic()
        if left <= 0:
            raise errors.CapacityError(_full_message(kind, limit, limits))
        yield from sleep(min(delay * random.uniform(0.8, 1.2), left))
        delay = min(delay * 1.5, POLL_MAX)


def _turn(limits: HostLimits, deadline: float) -> Flow[None]:
    """Reserve the next free moment of the host's start rate, then wait for it."""
    while True:
        wait = _reserve(1.0 / limits.start_rate, deadline)
        if wait is None:
            raise errors.CapacityError(
                f"At the host's start rate ({START_RATE_VARIABLE}={limits.start_rate:g}/s) this"
                f" start would begin after the {limits.wait:g} s a start may wait"
                f" ({WAIT_VARIABLE}). Raise {START_RATE_VARIABLE} (unset: no limit) or"
                f" {WAIT_VARIABLE}."
            )
        if wait >= 0:
            yield from sleep(wait)
            return
        yield from sleep(POLL_FIRST)  # another process is updating the turn: try again


def _reserve(interval: float, deadline: float) -> Optional[float]:
    """Seconds until this start's turn (reserved), None if it lies past ``deadline``, -1 if busy."""
    with _lock:  # flock excludes other processes; this lock the other threads of this one
        fd = _file(RATE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return -1.0
        try:
            raw = os.pread(fd, 8, 0)
            now = time.monotonic()  # CLOCK_MONOTONIC: the same clock in every process
            turn = max(now, struct.unpack("d", raw)[0] if len(raw) == 8 else 0.0)
            if turn > deadline:
                return None
            os.pwrite(fd, struct.pack("d", turn + interval), 0)
            return turn - now
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)


# -- what the limits look like now ---------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """How many slots of one kind are taken host-wide, and by which processes."""

    kind: str
    limit: int
    taken: int
    holders: dict[int, int]  # pid -> slots


def usage() -> list[Usage]:
    """Slots taken now, per kind (running only when it has a limit)."""
    limits = current()
    kinds = [(STARTS, limits.max_starts)]
    if limits.max_running:
        kinds.append((RUNNING, limits.max_running))
    return [_usage(kind, limit) for kind, limit in kinds]


def _usage(kind: str, limit: int) -> Usage:
    holders: dict[int, int] = {}
    with _lock:
        fd = _file(kind)
        mine = set(_held[fd])
        for index in range(limit):
            pid = os.getpid() if index in mine else _holder(fd, index)
            if pid is not None:
                holders[pid] = holders.get(pid, 0) + 1
    return Usage(kind, limit, sum(holders.values()), holders)


def _holder(fd: int, index: int) -> Optional[int]:
    """The pid holding slot ``index`` (0 if it is in another pid namespace), or None if free."""
    query = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, index, 1, 0)
    answer = fcntl.fcntl(fd, fcntl.F_GETLK, query)
    kind, _, _, _, pid = struct.unpack(_FLOCK, answer[: struct.calcsize(_FLOCK)])
    return None if kind == fcntl.F_UNLCK else pid


def _full_message(kind: str, limit: int, limits: HostLimits) -> str:
    holders = _usage(kind, limit).holders
    who = ", ".join(f"pid {pid} ({n})" for pid, n in sorted(holders.items())) or "no one now"
    if kind == STARTS:
        what = f"{limit} environment starts were in flight on this host"
        variable, default = MAX_STARTS_VARIABLE, f"default 2 x CPUs = {2 * _cpus()}"
        advice = "let starts finish"
    else:
        what = f"{limit} Rayfine environments ran on this host"
        variable, default = MAX_RUNNING_VARIABLE, f"default {DEFAULT_MAX_RUNNING}; 0: no limit"
        advice = "stop environments (cleanup(), close pools)"
    return (
        f"{what} for this user ({variable}={limit}; held by {who}) for the whole"
        f" {limits.wait:g} s a start may wait. {advice.capitalize()}, raise {variable}"
        f" ({default}), or raise {WAIT_VARIABLE} to wait longer."
    )


# -- fork --------------------------------------------------------------------------------------


def _after_fork_in_child() -> None:
    """A child holds none of its parent's locks (the kernel does not copy them): forget them."""
    global _lock
    _lock = threading.RLock()
    for fd in _held:
        _held[fd] = set()
        _full_until[fd] = 0.0
    _owners.clear()
    _admitting.clear()
    _cancelled.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
