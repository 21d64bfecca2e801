"""The keeper of a fleet: one thread that starts, checks, resets and stops its environments.

It plans under the fleet's lock and does the slow work (engine calls,
health requests) in threads of their own, so no piece waits for another:
it starts what the policy says is missing (at most ``max_starting`` at
once), checks idle environments every ``health_interval`` seconds, resets
released ones, stops retired ones (once no call uses them, or after
:data:`DRAIN_LIMIT`), and writes the fleet's status file now and then.

Failed starts back off (:class:`~.members.Failures`): after a round of
failures it waits, then tries *one* start; only a success brings back full
speed, so an image that never gets ready costs one start per back-off
period, never a spin.  After a hand-out, engine work waits for the burst
of acquires to pause (see :meth:`~.fleet.Fleet.quiet_at`).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import TYPE_CHECKING, Callable, Mapping

from .. import errors
from ..environment import steps
from ..environment.life import Life
from . import statusfile
from .members import Member, Phase

if TYPE_CHECKING:
    from .fleet import Fleet

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


class Keeper:
    """Keeps ``fleet`` at the target its policy (``missing``) sets."""

    def __init__(self, fleet: Fleet, missing: Missing) -> None:
        self.fleet = fleet
        self._missing = missing
        self._threads: set[threading.Thread] = set()
        self._checking = False
        self._next_check = 0.0
        self._written_version = -1
        self._written_at = 0.0
        self._file_lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._keep, name=f"rayfine-pool-{fleet.name}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def join(self, deadline: float) -> None:
        """Wait for the keeper and its work: a start ends soon once its environment is stopped."""
        me = threading.current_thread()
        with self.fleet.lock:
            threads = [self._thread, *self._threads]
        for thread in threads:
            if thread is not me and thread.ident is not None:
                thread.join(max(0.0, deadline - time.monotonic()))

    def forget_status(self) -> None:
        """Remove the status file for good (the fleet closed)."""
        with self._file_lock:  # a write in progress finishes first; none follows
            statusfile.remove(self.fleet.name)

    def spawn(self, work: Callable[..., None], *args: object) -> None:
        """Run ``work(*args)`` in a thread of its own (tracked, so ``join`` waits for it)."""
        fleet = self.fleet

        def run() -> None:
            try:
                work(*args)
            except Exception:  # each piece handles what it expects; this is a bug: keep going
                log.exception("rayfine: pool %s: %s failed", fleet.name, work.__name__)
            finally:
                with fleet.lock:
                    self._threads.discard(threading.current_thread())

        thread = threading.Thread(target=run, name=f"rayfine-pool-{fleet.name}", daemon=True)
        with fleet.lock:
            self._threads.add(thread)
        try:
            thread.start()
        except RuntimeError:  # the interpreter is shutting down: its exit step closes the fleet
            with fleet.lock:
                self._threads.discard(thread)
                fleet.stop_starting()
                for member in args:
                    if isinstance(member, Member) and member.phase is Phase.STARTING:
                        fleet.drop(member)  # never started

    # -- the loop ------------------------------------------------------------------------
    def _keep(self) -> None:
        fleet = self.fleet
        while True:
            seen, pause = fleet.notifier.version, IDLE_WAKE
            try:
                with fleet.lock:
                    if fleet.closing:
                        return
                    seen = fleet.notifier.version
                    now = time.monotonic()
                    outside = self._sweep()
                    quiet_at = fleet.quiet_at(now)
                    hold = outside or quiet_at > now
                    starts = [] if hold else self._plan_starts(now)
                    stops = [] if hold else self._plan_stops(now)
                    resets = self._plan_resets()
                    checks = self._plan_checks(now)
                    pause = min(self._next_wake(now), max(0.0, quiet_at - now) or IDLE_WAKE)
                if outside:
                    fleet.stopped_outside()
                    return
                for member in starts:
                    self.spawn(self._start, member)
                for member in stops:
                    self.spawn(self._stop, member)
                for member in resets:
                    self.spawn(self._reset, member)
                if checks:
                    self.spawn(self._check, checks)
                fleet.tell()
                self._publish()
            except Exception:  # a keeper that dies leaves the pool unattended: log, go on
                log.exception("rayfine: pool %s: keeper error", fleet.name)
            fleet.notifier.wait(seen, pause)

    def _sweep(self) -> bool:
        """Drop members stopped by others; True if idle ones were (the fleet must close)."""
        outside = False
        for member in self.fleet.members(Phase.READY, Phase.RESETTING):
            # Others are the start's, the acquirer's, the user's, or ours to stop (a stop
            # that failed leaves the environment "stopping"; the keeper tries it again).
            if member.stopped_outside and not member.resetting:
                outside = True
                self.fleet.drop(member)
        return outside

    def _plan_starts(self, now: float) -> list[Member]:
        fleet = self.fleet
        counts = fleet.counts()
        missing = self._missing(counts, sum(counts.values()))
        room = fleet.max_starting - counts[Phase.STARTING]
        if fleet.failures.rounds:  # recovering: one start at a time, after the back-off
            room = 0 if now < fleet.failures.retry_at else min(room, 1 - counts[Phase.STARTING])
        return [fleet.new_member() for _ in range(max(0, min(missing, room)))]

    def _plan_stops(self, now: float) -> list[Member]:
        planned = []
        for member in self.fleet.members(Phase.RETIRING):
            if now < member.retry_stop_at:
                continue
            if member.busy and now - member.retired_at < DRAIN_LIMIT:
                continue  # calls in flight end first (they fail fast if it is dead)
            member.phase = Phase.STOPPING
            planned.append(member)
        return planned

    def _plan_resets(self) -> list[Member]:
        planned = [m for m in self.fleet.members(Phase.RESETTING) if not m.resetting]
        for member in planned:
            member.resetting = True
        return planned

    def _plan_checks(self, now: float) -> list[Member]:
        interval = self.fleet.settings.health_interval
        if not interval or self._checking or now < self._next_check:
            return []
        self._next_check = now + max(0.25, interval / 4)
        due = [m for m in self.fleet.members(Phase.READY) if now - m.checked >= interval]
        self._checking = bool(due)
        return due

    def _next_wake(self, now: float) -> float:
        fleet = self.fleet
        wake = now + IDLE_WAKE
        if fleet.failures.rounds:
            wake = min(wake, max(fleet.failures.retry_at, now + 0.01))
        if fleet.settings.health_interval:
            wake = min(wake, max(self._next_check, now + 0.01))
        for member in fleet.members(Phase.RETIRING):
            wake = min(wake, max(member.retry_stop_at, now + 0.05))
        if fleet.notifier.version != self._written_version:
            wake = min(wake, max(self._written_at + WRITE_EVERY, now + 0.01))
        return max(0.0, wake - now)

    def _publish(self) -> None:
        """Write the status file when the fleet changed, at most every :data:`WRITE_EVERY` s."""
        fleet = self.fleet
        now, version = time.monotonic(), fleet.notifier.version
        if version == self._written_version or now - self._written_at < WRITE_EVERY:
            return
        with self._file_lock:  # forget_status() removes the file under it: never written back
            if fleet.closing:
                return
            self._written_version, self._written_at = version, now
            try:
                statusfile.write(fleet.status())
            except (OSError, errors.ValidationError) as exc:
                log.debug("rayfine: pool %s: status file not written: %s", fleet.name, exc)

    # -- the work, each piece in a thread of its own ----------------------------------------
    def _start(self, member: Member) -> None:
        fleet = self.fleet
        try:
            if fleet.closing:
                raise errors.EnvironmentClosedError(f"Pool {fleet.name} was closed.")
            steps.run(member.life.start())
        except BaseException as exc:
            fleet.start_failed(member, exc)
        else:
            fleet.start_succeeded(member)

    def _stop(self, member: Member) -> None:
        fleet = self.fleet
        try:
            member.life.stop_blocking("pool")
        except Exception as exc:  # the engine is down: try again later (the exit hook does too)
            with fleet.lock:
                member.stop_failures += 1
                member.phase = Phase.RETIRING
                member.retry_stop_at = time.monotonic() + min(
                    30.0, 0.5 * 2 ** (member.stop_failures - 1)
                )
            log.warning("rayfine: pool %s: could not stop %s: %s", fleet.name, member.env_id, exc)
        else:
            with fleet.lock:
                fleet.drop(member)
        fleet.changed()

    def _reset(self, member: Member) -> None:
        fleet = self.fleet
        method = fleet.settings.reset
        assert method is not None
        fresh = member.uses == 0  # its first reset completes its start
        try:
            steps.run(member.life.call(method, (), {}, fleet.settings.reset_timeout or None))
        except Exception as exc:
            with fleet.lock:
                member.resetting = False
                if fresh and not fleet.closing:  # counted as a failed start: backs off
                    fleet.failures.record(exc, time.monotonic())
            fleet.retire(member, f"its {method}() failed: {type(exc).__name__}: {exc}")
            return
        with fleet.lock:
            member.resetting = False
            if member.phase is Phase.RESETTING:
                member.phase = Phase.READY
                member.checked = time.monotonic()
                if fresh:
                    fleet.failures.success()
        fleet.changed()

    def _check(self, due: list[Member]) -> None:
        fleet = self.fleet
        try:
            for member in due:
                if fleet.closing:
                    return
                answered = steps.run(member.life.is_ready())
                with fleet.lock:
                    if member.phase is not Phase.READY:
                        continue
                    if answered:
                        member.checked, member.failed_checks = time.monotonic(), 0
                        continue
                    member.failed_checks += 1
                    silent = member.failed_checks >= CHECK_FAILURES
                if self._dead(member) or silent:
                    fleet.retire(member, "it failed its liveness check")
        finally:
            with fleet.lock:
                self._checking = False
            fleet.changed()

    def _dead(self, member: Member) -> bool:
        """The engine says its container is gone (unknown, e.g. engine down: not dead)."""
        try:
            state = self.fleet.runtime.health(member.life.handle.id)
        except Exception as exc:  # a runtime's own error too: a check must not end the checks
            log.debug("rayfine: pool %s: health of %s unknown: %s", self.fleet.name, member, exc)
            return False
        return not state.running


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
