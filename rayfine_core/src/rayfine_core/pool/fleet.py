"""Environments of one image kept at a target: the members, their status, and closing them.

A warm pool and a replica set are each a :class:`Fleet` plus a policy that
says how many environments are missing (:mod:`~.warm`, :mod:`~.replicas`);
the fleet's :class:`~.keeper.Keeper` thread starts, checks, resets and
stops them.  Callers never wait for the keeper: they take what is ready,
and wait (see :mod:`~.drive`) for the notifier when nothing is.

Every environment is a registered :class:`~rayfine_core.environment.life.Life`,
so exit and signals stop it like any other.  Fleets also close at
interpreter exit (before the registry's own step when they were made
first), and a fleet whose idle environments were stopped from outside
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
from typing import Callable, Optional

from .. import errors
from ..environment import hostlimits
from ..environment.life import Life, State
from ..environment.options import EnvOptions
from ..plugins.manager import get_manager
from ..runtime.base import Runtime
from .drive import PoolFlow, wait
from .keeper import Keeper, Missing, stop_lives
from .members import Failures, Member, Phase, PoolStatus
from .notify import Notifier
from .progress import Progress, ProgressCallback, tell
from .settings import FleetSettings, member_options

log = logging.getLogger("rayfine")
JOIN_LIMIT = 30.0
QUIET, QUIET_LIMIT = 0.05, 0.25
"""After a hand-out, starts and stops wait until hand-outs have paused this long (at most the
limit) unless someone waits for an environment: a burst of acquires gets its first results
before container starts and stops compete with it for the CPU."""


class Fleet:
    """Members of one pool, their status and progress; its keeper maintains them."""

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
        self.waiting = 0
        """Callers waiting for an environment (under ``lock``): engine work then never waits."""
        self._make_face = make_face
        self._members: dict[str, Member] = {}
        self._started = 0
        self._closing = False
        self._closed = False
        self._close_lock = threading.Lock()
        self._pid = os.getpid()
        self._since = time.monotonic()
        self._listeners: list[ProgressCallback] = [on_progress] if on_progress else []
        self._shown: Optional[tuple[object, ...]] = None
        self._telling = threading.Lock()
        self._burst_since = 0.0
        self._handed_out = 0.0
        self._keeper: Optional[Keeper] = None

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def closing(self) -> bool:
        """``close()`` began (or the fleet closed itself): nothing new starts."""
        return self._closing

    def open(self, missing: Missing) -> None:
        """Start keeping the fleet at its target, as ``missing`` counts it."""
        self._keeper = Keeper(self, missing)
        _track(self)
        self._keeper.start()

    def check_usable(self) -> None:
        """Raise unless this process may use the fleet now."""
        self._check_process()
        if self._closing:
            raise errors.EnvironmentClosedError(f"Pool {self.name} was closed.")

    def _check_process(self) -> None:
        if os.getpid() != self._pid:
            raise errors.ValidationError(
                f"Pool {self.name} belongs to process {self._pid}, which made it before a fork;"
                " make a new pool in this process."
            )

    # -- members (read and changed under ``lock``) ------------------------------------------
    def members(self, *phases: Phase) -> list[Member]:
        return [m for m in self._members.values() if m.phase in phases]

    def member(self, env_id: str) -> Optional[Member]:
        return self._members.get(env_id)

    def counts(self) -> dict[Phase, int]:
        found = collections.Counter(m.phase for m in self._members.values())
        return {phase: found.get(phase, 0) for phase in Phase}

    def new_member(self) -> Member:
        """A member about to start (counted as starting from now on)."""
        life = Life(self.options, self.runtime)
        member = self._members[life.env_id] = Member(life, self._make_face(life))
        return member

    def drop(self, member: Member) -> None:
        self._members.pop(member.env_id, None)

    def stop_starting(self) -> None:
        """No more starts (the interpreter is shutting down; its exit step closes the fleet)."""
        self._closing = True

    # -- what happens to members (call without holding ``lock``) ------------------------------
    def start_succeeded(self, member: Member) -> None:
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

    def start_failed(self, member: Member, error: BaseException) -> None:
        outside = False
        with self.lock:
            self.drop(member)
            if not self._closing:
                if isinstance(error, errors.EnvironmentClosedError):
                    outside = True  # stopped by the exit hook, or the process is exiting
                else:
                    self.failures.record(error, time.monotonic())
                    log.warning(
                        "rayfine: pool %s: a start failed (%s); next try in %.1fs",
                        self.name,
                        self.failures.describe(),
                        max(0.0, self.failures.retry_at - time.monotonic()),
                    )
        if outside:
            self.stopped_outside()
        self.changed()

    def retire(self, member: Member, why: str) -> None:
        """Stop ``member`` once no call uses it (the keeper does it, and replaces it)."""
        with self.lock:
            if member.phase in (Phase.RETIRING, Phase.STOPPING, Phase.STARTING):
                return
            log.info("rayfine: pool %s: retiring %s: %s", self.name, member.env_id, why)
            member.phase = Phase.RETIRING
            member.retired_at = time.monotonic()
        self.changed()

    def forget(self, member: Member) -> None:
        """Drop ``member`` whose environment was stopped by its user."""
        with self.lock:
            self.drop(member)
        self.changed()

    def handed_out(self) -> None:
        """An environment was just handed out (see :data:`QUIET`)."""
        with self.lock:
            now = time.monotonic()
            if now - self._handed_out >= QUIET:
                self._burst_since = now
            self._handed_out = now

    def quiet_at(self, now: float) -> float:
        """When engine work may begin: now, or once the current burst of hand-outs pauses."""
        if now - self._handed_out >= QUIET or self.waiting:
            return now
        return min(self._handed_out + QUIET, self._burst_since + QUIET_LIMIT)

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
        if self._keeper is not None:
            self._keeper.spawn(self._close_quietly)

    def changed(self) -> None:
        """Wake waiters and the keeper; tell progress listeners.  Never call it holding ``lock``."""
        self.notifier.notify()
        self.tell()

    # -- waiting and reporting ----------------------------------------------------------------
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
        if not isinstance(wanted, int) or isinstance(wanted, bool) or not wanted >= 0:
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
                    f" {timeout:g}s ({self.status()}). Wait longer (timeout=); `rayfine pool"
                    " limits` shows whether host-wide start slots are the bottleneck."
                )
            yield from wait(self.notifier, seen, left)

    def status(self) -> PoolStatus:
        with self.lock:
            counts = self.counts()
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

    def tell(self) -> None:
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
            if self._keeper is not None:
                self._keeper.join(time.monotonic() + JOIN_LIMIT)
            with self.lock:
                for member in members:
                    if member.life.state is State.CLOSED:
                        self.drop(member)
                self._closed = not failed
            if self._closed:
                _untrack(self)
                if self._keeper is not None:
                    self._keeper.forget_status()
            self.changed()
        if failed:
            raise failed[0]

    def _close_quietly(self) -> None:
        try:
            self.close()
        except Exception as exc:
            log.warning("rayfine: pool %s: close failed: %s", self.name, exc)

    def __repr__(self) -> str:
        return f"<Fleet {self.status()}>"


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
