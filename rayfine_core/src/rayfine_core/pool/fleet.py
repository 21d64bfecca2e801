"""Environments of one image kept at a target: started concurrently, checked, replaced, stopped.

A warm pool and a replica set are each a :class:`Fleet` plus a policy saying
how many environments are missing (``missing``).  A *keeper* thread per fleet
does the slow work, each piece in a thread of its own so none waits for
another: it starts what is missing (at most ``max_starting`` at once), checks
idle environments answer every ``health_interval`` seconds, resets released
ones (warm pools with ``reset=``), and stops retired ones.  Callers never
wait for the keeper: they take what is ready, and wait (see
:mod:`~.drive`) for the notifier when nothing is.

Failed starts back off exponentially (:class:`~.members.Failures`): after a
round of failures the keeper waits, then tries *one* start; only a success
brings back full speed, so an image that never gets ready costs one start
per back-off period, never a spin.

Every environment is a registered :class:`~rayfine_core.environment.life.Life`,
so exit and signals stop it like any other.  Fleets also close at
interpreter exit (before the registry's own step when they were made first),
and a fleet whose idle environments were stopped from outside
(``cleanup_all_environments()``, the exit hook) closes itself rather than
start new ones.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
import weakref
from typing import Callable, Mapping, Optional

from .. import errors
from ..environment import hostlimits, steps
from ..environment.life import Life, State
from ..environment.options import EnvOptions
from ..plugins.manager import get_manager
from ..runtime.base import Runtime
from . import statusfile
from .drive import PoolFlow, wait
from .members import Failures, Member, Phase, PoolStatus
from .notify import Notifier
from .progress import Progress, ProgressCallback, tell
from .settings import FleetSettings, member_options

log = logging.getLogger("rayfine")
Missing = Callable[[Mapping[Phase, int], int], int]
"""A policy: how many environments to start, given the count per phase and the total."""
CHECK_FAILURES = 3
"""Failed liveness checks in a row after which a running (but silent) environment is replaced."""
DRAIN_LIMIT = 30.0
"""Seconds a retired environment may keep serving calls in flight before it is stopped anyway."""
IDLE_WAKE = 1.0
WRITE_EVERY = 0.5
"""Seconds between writes of the status file (see :mod:`~.statusfile`)."""
STOP_WIDTH = 16
"""Environments stopped at once when a fleet closes."""
JOIN_LIMIT = 30.0
QUIET, QUIET_LIMIT = 0.05, 0.25
"""After a hand-out, starts and stops wait until hand-outs have paused this long (at most the
limit) unless someone waits for an environment: a burst of acquires gets its first results
before container starts and stops compete with it for the CPU."""


class Fleet:
    """Members of one pool, the keeper that maintains them, and their status."""

    def __init__(
        self,
        options: EnvOptions,
        runtime: Runtime,
        settings: FleetSettings,
        make_face: Callable[[Life], object],
        on_progress: Optional[ProgressCallback] = None,
    ) -> None:
        self.options = member_options(options, settings)
        self.runtime = runtime
        self.settings = settings
        self.max_starting = settings.max_starting or hostlimits.current().max_starts
        self.lock = threading.RLock()
        """Guards every member's phase and counters; never held across I/O."""
        self.notifier = Notifier()
        self.failures = Failures()
        self._make_face = make_face
        self._missing: Missing = lambda counts, total: 0
        self._members: dict[str, Member] = {}
        self._started = 0
        self._closing = False
        self._closed = False
        self._close_lock = threading.Lock()
        self._pid = os.getpid()
        self._since = time.monotonic()
        self._threads: set[threading.Thread] = set()
        self._listeners: list[ProgressCallback] = [on_progress] if on_progress else []
        self._shown: Optional[tuple[int, ...]] = None
        self._telling = threading.Lock()
        self._file_lock = threading.Lock()
        self._written = 0.0
        self._dirty = True
        self._checking = False
        self._next_check = 0.0
        self._burst_since = 0.0
        self._handed_out = 0.0
        self.waiting = 0
        """Callers waiting for an environment (under ``lock``): starts then never wait."""
        self._keeper = threading.Thread(
            target=self._keep, name=f"rayfine-pool-{settings.name}", daemon=True
        )

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def closing(self) -> bool:
        """``close()`` began (or the fleet closed itself): nothing new starts."""
        return self._closing

    def open(self, missing: Missing) -> None:
        """Start keeping the fleet at its target, as ``missing`` counts it."""
        self._missing = missing
        _track(self)
        self._keeper.start()

    # -- what callers use (under ``lock`` where they read members) ----------------------------
    def check_usable(self) -> None:
        """Raise unless this process may use the fleet now."""
        if os.getpid() != self._pid:
            raise errors.ValidationError(
                f"Pool {self.name} belongs to process {self._pid}, which made it before a fork;"
                " make a new pool in this process."
            )
        if self._closing:
            raise errors.EnvironmentClosedError(f"Pool {self.name} was closed.")

    def members(self, *phases: Phase) -> list[Member]:
        return [m for m in self._members.values() if m.phase in phases]

    def member(self, env_id: str) -> Optional[Member]:
        return self._members.get(env_id)

    def retire(self, member: Member, why: str) -> None:
        """Stop ``member`` once no call uses it (the keeper does it, and replaces it)."""
        with self.lock:
            if member.phase in (Phase.RETIRING, Phase.STOPPING, Phase.STARTING):
                return
            log.info("rayfine: pool %s: retiring %s: %s", self.name, member.env_id, why)
            member.phase = Phase.RETIRING
            member.retired_at = time.monotonic()
        self.changed()

    def handed_out(self) -> None:
        """An environment was just handed out (see :data:`QUIET`)."""
        with self.lock:
            now = time.monotonic()
            if now - self._handed_out >= QUIET:
                self._burst_since = now
            self._handed_out = now

    def _quiet_at(self, now: float) -> float:
        """When engine work may begin: now, or once the current burst of hand-outs pauses."""
        if now - self._handed_out >= QUIET or self.waiting:
            return now
        return min(self._handed_out + QUIET, self._burst_since + QUIET_LIMIT)

    def forget(self, member: Member) -> None:
        """Drop ``member`` whose environment was stopped by its user."""
        with self.lock:
            self._members.pop(member.env_id, None)
        self.changed()

    def stopped_outside(self) -> None:
        """Idle environments were stopped from outside: close instead of starting new ones."""
        with self.lock:
            if self._closing:
                return
            self._closing = True
        log.warning(
            "rayfine: pool %s: its environments were stopped from outside the pool"
            " (cleanup_all_environments() or process exit); closing it",
            self.name,
        )
        self.changed()
        self._spawn(self._close_quietly)

    def changed(self) -> None:
        """Wake waiters and the keeper; tell progress listeners.  Never call it holding ``lock``."""
        self._dirty = True
        self.notifier.notify()
        self._tell()

    def failure_error(self, wrap: bool) -> BaseException:
        """What a waiter raises while starts keep failing (call under ``lock``)."""
        last = self.failures.last
        if not wrap and last is not None:
            return last
        error = errors.StartError(
            f"Pool {self.name} cannot start environments of {self.options.image}:"
            f" {self.failures.total} starts failed, the last with {self.failures.describe()}"
            f" (it retries in the background, backing off up to {self.failures.delay:g}s)"
        )
        error.__cause__ = last
        return error

    def wait_ready(self, count: Optional[int], timeout: Optional[float]) -> PoolFlow[None]:
        """Wait until ``count`` (default: the target) environments are ready.

        :raises CapacityError: not within ``timeout`` seconds.
        :raises StartError: (or the start's own error) starts keep failing.
        """
        wanted = self.settings.target if count is None else count
        if not isinstance(wanted, int) or isinstance(wanted, bool) or not 0 <= wanted:
            raise errors.ValidationError(f"count must be a whole number >= 0, got {count!r}.")
        if wanted > self.settings.target:
            raise errors.ValidationError(
                f"Pool {self.name} keeps {self.settings.target} ready; cannot wait for {wanted}."
            )
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self.lock:
                seen = self.notifier.version
                self.check_usable()
                ready = len(self.members(Phase.READY))
                if ready >= wanted:
                    return
                if self.failures.failing:
                    raise self.failure_error(wrap=False)
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise errors.CapacityError(
                    f"Pool {self.name} had {ready} of {wanted} environments ready after"
                    f" {timeout:g}s ({self.status()}). Wait longer (timeout=), or lower"
                    f" RAYFINE_HOST_MAX_STARTS contention."
                )
            yield from wait(self.notifier, seen, left)

    def status(self) -> PoolStatus:
        with self.lock:
            counts = self._counts()
            failures = self.failures
            retry_in = failures.retry_at - time.monotonic() if failures.rounds else None
            return PoolStatus(
                name=self.name,
                kind=self.settings.kind,
                image=self.options.image,
                runtime=self.runtime.name,
                target=self.settings.target,
                ready=counts[Phase.READY],
                starting=counts[Phase.STARTING],
                in_use=counts[Phase.IN_USE] + counts[Phase.CHECKING],
                resetting=counts[Phase.RESETTING],
                stopping=counts[Phase.RETIRING] + counts[Phase.STOPPING],
                busy=sum(m.busy for m in self._members.values()),
                started=self._started,
                failed=failures.total,
                failing=failures.failing,
                last_error=failures.describe() if failures.last is not None else None,
                retry_in=None if retry_in is None else max(0.0, retry_in),
                closed=self._closed,
            )

    # -- progress --------------------------------------------------------------------------
    def add_listener(self, listener: ProgressCallback) -> None:
        with self.lock:
            self._listeners.append(listener)
        tell(listener, self.progress())

    def remove_listener(self, listener: ProgressCallback) -> None:
        with self.lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def progress(self, status: Optional[PoolStatus] = None) -> Progress:
        """The fleet's progress towards its target (from ``status``, or now)."""
        status = status or self.status()
        return Progress(
            label=f"pool {self.name}",
            total=status.target,
            ready=status.ready,
            starting=status.starting,
            failed=status.failed,
            elapsed=time.monotonic() - self._since,
        )

    def _tell(self) -> None:
        """Tell listeners the progress if it changed (one at a time, in order)."""
        with self._telling:
            status = self.status()
            shown = (status.ready, status.starting, status.in_use, status.failed, status.closed)
            if shown == self._shown:
                return
            self._shown = shown
            with self.lock:
                listeners = list(self._listeners)
            progress = self.progress(status)
            for listener in listeners:
                tell(listener, progress)

    def _publish(self) -> None:
        """Write the status file, at most every :data:`WRITE_EVERY` seconds."""
        now = time.monotonic()
        if not self._dirty or now - self._written < WRITE_EVERY:
            return
        with self._file_lock:  # close() removes the file under it: never written back after
            if self._closing:
                return
            self._dirty, self._written = False, now
            try:
                statusfile.write(self.status())
            except (OSError, errors.ValidationError) as exc:
                log.debug("rayfine: pool %s: status file not written: %s", self.name, exc)

    # -- the keeper ------------------------------------------------------------------------
    def _keep(self) -> None:
        while True:
            seen, pause = self.notifier.version, IDLE_WAKE
            try:
                with self.lock:
                    if self._closing:
                        return
                    seen = self.notifier.version
                    now = time.monotonic()
                    outside = self._sweep()
                    quiet_at = self._quiet_at(now)
                    hold = outside or quiet_at > now
                    starts = [] if hold else self._plan_starts(now)
                    stops = [] if hold else self._plan_stops(now)
                    resets = self._plan_resets()
                    checks = self._plan_checks(now)
                    pause = self._next_wake(now)
                    if quiet_at > now:
                        pause = min(pause, quiet_at - now)
                if outside:
                    self.stopped_outside()
                    return
                for member in starts:
                    self._spawn(self._start, member)
                for member in stops:
                    self._spawn(self._stop, member)
                for member in resets:
                    self._spawn(self._reset, member)
                if checks:
                    self._spawn(self._check, checks)
                self._tell()
                self._publish()
            except Exception:  # a keeper that dies leaves the pool unattended: log, go on
                log.exception("rayfine: pool %s: keeper error", self.name)
            self.notifier.wait(seen, pause)

    def _counts(self) -> dict[Phase, int]:
        counts = collections.Counter(m.phase for m in self._members.values())
        return {phase: counts.get(phase, 0) for phase in Phase}

    def _sweep(self) -> bool:
        """Drop members stopped by others; True if idle ones were (the fleet must close)."""
        outside = False
        for member in self.members(Phase.READY, Phase.RESETTING):
            # Others are the start's, the acquirer's, the user's, or ours to stop (a stop
            # that failed leaves the environment "stopping"; the keeper tries it again).
            if member.stopped_outside and not member.resetting:
                outside = True
                del self._members[member.env_id]
        return outside

    def _plan_starts(self, now: float) -> list[Member]:
        counts = self._counts()
        missing = self._missing(counts, len(self._members))
        room = self.max_starting - counts[Phase.STARTING]
        if self.failures.rounds:  # recovering: one start at a time, after the back-off
            room = 0 if now < self.failures.retry_at else min(room, 1 - counts[Phase.STARTING])
        planned = []
        for _ in range(max(0, min(missing, room))):
            life = Life(self.options, self.runtime)
            member = self._members[life.env_id] = Member(life, self._make_face(life))
            planned.append(member)
        return planned

    def _plan_stops(self, now: float) -> list[Member]:
        planned = []
        for member in self.members(Phase.RETIRING):
            if now < member.retry_stop_at:
                continue
            if member.busy and now - member.retired_at < DRAIN_LIMIT:
                continue  # calls in flight end first (they fail fast if it is dead)
            member.phase = Phase.STOPPING
            planned.append(member)
        return planned

    def _plan_resets(self) -> list[Member]:
        planned = [m for m in self.members(Phase.RESETTING) if not m.resetting]
        for member in planned:
            member.resetting = True
        return planned

    def _plan_checks(self, now: float) -> list[Member]:
        interval = self.settings.health_interval
        if not interval or self._checking or now < self._next_check:
            return []
        self._next_check = now + max(0.25, interval / 4)
        due = [m for m in self.members(Phase.READY) if now - m.checked >= interval]
        self._checking = bool(due)
        return due

    def _next_wake(self, now: float) -> float:
        wake = now + IDLE_WAKE
        if self.failures.rounds:
            wake = min(wake, max(self.failures.retry_at, now + 0.01))
        if self.settings.health_interval:
            wake = min(wake, max(self._next_check, now + 0.01))
        for member in self.members(Phase.RETIRING):
            wake = min(wake, max(member.retry_stop_at, now + 0.05))
        if self._dirty:
            wake = min(wake, max(self._written + WRITE_EVERY, now + 0.01))
        return max(0.0, wake - now)

    def _spawn(self, work: Callable[..., None], *args: object) -> None:
        def run() -> None:
            try:
                work(*args)
            except Exception:  # each piece handles what it expects; this is a bug: keep going
                log.exception("rayfine: pool %s: %s failed", self.name, work.__name__)
            finally:
                with self.lock:
                    self._threads.discard(threading.current_thread())

        thread = threading.Thread(target=run, name=f"rayfine-pool-{self.name}", daemon=True)
        with self.lock:
            self._threads.add(thread)
        try:
            thread.start()
        except RuntimeError:  # the interpreter is shutting down: its exit step closes the fleet
            with self.lock:
                self._threads.discard(thread)
                self._closing = True
                for member in args:
                    if isinstance(member, Member) and member.phase is Phase.STARTING:
                        self._members.pop(member.env_id, None)  # never started

    # -- the keeper's work, each in a thread of its own -------------------------------------
    def _start(self, member: Member) -> None:
        try:
            with self.lock:
                if self._closing:
                    raise errors.EnvironmentClosedError(f"Pool {self.name} was closed.")
            steps.run(member.life.start())
        except BaseException as exc:
            outside = False
            with self.lock:
                self._members.pop(member.env_id, None)
                if not self._closing:
                    if isinstance(exc, errors.EnvironmentClosedError):
                        outside = True  # stopped by the exit hook, or the process is exiting
                    else:
                        self.failures.record(exc, time.monotonic())
                        log.warning(
                            "rayfine: pool %s: a start failed (%s); next try in %.1fs",
                            self.name,
                            self.failures.describe(),
                            max(0.0, self.failures.retry_at - time.monotonic()),
                        )
            if outside:
                self.stopped_outside()
        else:
            with self.lock:
                if member.phase is Phase.STARTING and not self._closing:
                    self._started += 1
                    if self.settings.reset is not None:  # reset before the first hand-out too
                        member.phase = Phase.RESETTING
                    else:
                        member.phase = Phase.READY
                        member.checked = time.monotonic()
                        self.failures.success()
        self.changed()

    def _stop(self, member: Member) -> None:
        try:
            member.life.stop_blocking("pool")
        except Exception as exc:  # the engine is down: try again later (the exit hook does too)
            with self.lock:
                member.stop_failures += 1
                member.phase = Phase.RETIRING
                member.retry_stop_at = time.monotonic() + min(
                    30.0, 0.5 * 2 ** (member.stop_failures - 1)
                )
            log.warning("rayfine: pool %s: could not stop %s: %s", self.name, member.env_id, exc)
        else:
            with self.lock:
                self._members.pop(member.env_id, None)
        self.changed()

    def _reset(self, member: Member) -> None:
        method = self.settings.reset
        assert method is not None
        fresh = member.uses == 0  # its first reset completes its start
        try:
            steps.run(member.life.call(method, (), {}, self.settings.reset_timeout or None))
        except Exception as exc:
            with self.lock:
                member.resetting = False
                if fresh and not self._closing:  # counted as a failed start: backs off
                    self.failures.record(exc, time.monotonic())
            self.retire(member, f"its {method}() failed: {type(exc).__name__}: {exc}")
            return
        with self.lock:
            member.resetting = False
            if member.phase is Phase.RESETTING:
                member.phase = Phase.READY
                member.checked = time.monotonic()
                if fresh:
                    self.failures.success()
        self.changed()

    def _check(self, due: list[Member]) -> None:
        try:
            for member in due:
                if self._closing:
                    return
                answered = steps.run(member.life.is_ready())
                with self.lock:
                    if member.phase is not Phase.READY:
                        continue
                    if answered:
                        member.checked, member.failed_checks = time.monotonic(), 0
                        continue
                    member.failed_checks += 1
                    silent = member.failed_checks >= CHECK_FAILURES
                if self._dead(member) or silent:
                    self.retire(member, "it failed its liveness check")
        finally:
            with self.lock:
                self._checking = False
            self.changed()

    def _dead(self, member: Member) -> bool:
        """The engine says its container is gone (unknown, e.g. engine down: not dead)."""
        try:
            state = self.runtime.health(member.life.handle.id)
        except Exception as exc:  # a runtime's own error too: a check must not end the checks
            log.debug("rayfine: pool %s: health of %s unknown: %s", self.name, member.env_id, exc)
            return False
        return not state.running

    # -- closing ---------------------------------------------------------------------------
    def close(self) -> None:
        """Stop every environment of the fleet, lent out or not; idempotent.

        :raises EngineUnavailableError: some could not be stopped; they stay
            registered (the exit hook tries again) and a second ``close()`` retries.
        """
        self._check_process()
        with self._close_lock:
            if self._closed:
                return
            with self.lock:
                self._closing = True
                members = list(self._members.values())
            self.changed()
            failed = stop_lives([m.life for m in members])
            self._join()
            with self.lock:
                for member in members:
                    if member.life.state is State.CLOSED:
                        self._members.pop(member.env_id, None)
                self._closed = not failed
            if self._closed:
                _untrack(self)
                with self._file_lock:
                    statusfile.remove(self.name)
            self.changed()
        if failed:
            raise failed[0]

    def _check_process(self) -> None:
        if os.getpid() != self._pid:
            raise errors.ValidationError(
                f"Pool {self.name} belongs to process {self._pid}; a forked child cannot close it."
            )

    def _close_quietly(self) -> None:
        try:
            self.close()
        except Exception as exc:
            log.warning("rayfine: pool %s: close failed: %s", self.name, exc)

    def _join(self) -> None:
        """Wait for the keeper's threads: a start ends soon once its environment is stopped."""
        deadline = time.monotonic() + JOIN_LIMIT
        me = threading.current_thread()
        for thread in [self._keeper, *list(self._threads)]:
            if thread is not me and thread.ident is not None:
                thread.join(max(0.0, deadline - time.monotonic()))

    def __repr__(self) -> str:
        return f"<Fleet {self.status()}>"


def stop_lives(lives: list[Life], width: int = STOP_WIDTH) -> list[BaseException]:
    """Stop ``lives``, ``width`` at a time; return what failed (each was tried)."""
    queue = collections.deque(lives)
    failed: list[BaseException] = []

    def work() -> None:
        while True:
            try:
                life = queue.popleft()
            except IndexError:
                return
            try:
                life.stop_blocking("pool")
            except Exception as exc:
                failed.append(exc)

    threads = []
    for _ in range(min(width, len(lives))):
        thread = threading.Thread(target=work, name="rayfine-pool-stop", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # no new threads at interpreter shutdown (3.12): do it here
            break
        threads.append(thread)
    work()
    for thread in threads:
        thread.join()
    return failed


# -- every open fleet of this process: closed at exit ------------------------------------------

_open: weakref.WeakSet[Fleet] = weakref.WeakSet()
_open_lock = threading.Lock()


def _track(fleet: Fleet) -> None:
    with _open_lock:
        _open.add(fleet)
    get_manager().before_shutdown(_close_all)


def _untrack(fleet: Fleet) -> None:
    with _open_lock:
        _open.discard(fleet)


def _close_all() -> None:
    with _open_lock:
        fleets = list(_open)
    for fleet in fleets:
        try:
            fleet.close()
        except Exception as exc:
            log.warning("rayfine: closing pool %s at exit failed: %s", fleet.name, exc)


def _after_fork_in_child() -> None:
    global _open_lock
    _open_lock = threading.Lock()
    _open.clear()  # the parent's pools: never the child's to close


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
