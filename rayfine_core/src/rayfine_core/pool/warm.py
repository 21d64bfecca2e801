"""Lending a warm pool's environments: ``acquire`` hands a ready one out, ``release`` retires it.

An acquire takes the oldest idle environment, checks that its server
answers (a health request, well under a millisecond on a Unix socket) and
hands it out; the keeper starts its replacement at once.  Only when nothing
is idle does it wait, for the notifier, up to its timeout.  On release the
environment is stopped and a fresh one takes its place (a fresh environment
per episode), or, with ``reset=``, its reset method is called and it goes
back to the idle ones if that succeeds.
"""

from __future__ import annotations

import time
from typing import Mapping, Optional

from .. import errors
from .drive import PoolFlow, wait
from .fleet import Fleet
from .members import Member, Phase


class Lender:
    """The warm-pool policy over a :class:`~.fleet.Fleet`."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet

    def missing(self, counts: Mapping[Phase, int], total: int) -> int:
        """Idle (or soon idle) environments short of the target, within ``max_envs``."""
        settings = self.fleet.settings
        soon_idle = counts[Phase.READY] + counts[Phase.STARTING] + counts[Phase.RESETTING]
        wanted = settings.target - soon_idle
        if settings.max_envs is not None:
            wanted = min(wanted, settings.max_envs - total)
        return wanted

    def acquire(self, timeout: Optional[float]) -> PoolFlow[Member]:
        """Take an idle environment that answers; wait up to ``timeout`` s if none is idle.

        :raises CapacityError: nothing became ready in time.
        :raises StartError: starts keep failing (the error says why).
        :raises EnvironmentClosedError: the pool was closed.
        """
        if timeout is not None and not (
            isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout >= 0
        ):
            raise errors.ValidationError(
                f"timeout must be a number of seconds >= 0 (None: no limit), got {timeout!r}."
            )
        fleet = self.fleet
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with fleet.lock:
                seen = fleet.notifier.version
                fleet.check_usable()
                member = next(iter(fleet.members(Phase.READY)), None)
                if member is not None:
                    member.phase = Phase.CHECKING
                elif fleet.failures.failing:
                    raise fleet.failure_error(wrap=True)
            if member is not None:
                if (yield from self._hand_out(member)):
                    return member
                continue
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise errors.CapacityError(
                    f"No environment of pool {fleet.name} became free within {timeout:g}s"
                    f" ({fleet.status()}). Make the pool larger (size=, max_envs=), release"
                    " environments sooner, or wait longer (timeout=)."
                )
            with fleet.lock:
                fleet.waiting += 1
            try:
                yield from wait(fleet.notifier, seen, left)
            finally:
                with fleet.lock:
                    fleet.waiting -= 1

    def _hand_out(self, member: Member) -> PoolFlow[bool]:
        """Check ``member`` answers; lend it if so, retire it if not."""
        fleet = self.fleet
        if member.stopped_outside:
            fleet.stopped_outside()
            raise errors.EnvironmentClosedError(
                f"Pool {fleet.name} was closed: its environments were stopped from outside."
            )
        try:
            answered = yield from member.life.is_ready()
        except BaseException:  # cancelled, or interrupted: it stays in the pool
            with fleet.lock:
                if member.phase is Phase.CHECKING:
                    member.phase = Phase.READY
            fleet.changed()
            raise
        with fleet.lock:
            if answered and member.phase is Phase.CHECKING:
                member.phase = Phase.IN_USE
                member.uses += 1
                member.checked = time.monotonic()
            else:
                answered = False
        if answered:
            fleet.handed_out()
        fleet.changed()  # the keeper starts the replacement (once the burst pauses)
        if not answered:
            fleet.retire(member, "it did not answer its liveness check before hand-out")
        return answered

    def release(self, env: object) -> None:
        """Give back an environment from :meth:`acquire` (never blocks).

        :raises ValidationError: ``env`` is not lent out by this pool.
        """
        fleet = self.fleet
        env_id = getattr(env, "id", None)
        forget = False
        with fleet.lock:
            member = fleet.member(env_id) if isinstance(env_id, str) else None
            if member is None or member.face is not env:
                if fleet.closing:
                    return  # close() stopped it already
                raise errors.ValidationError(
                    f"{env!r} is not an environment of pool {fleet.name}, or it was released"
                    " already."
                )
            if member.phase is not Phase.IN_USE:
                raise errors.ValidationError(
                    f"Environment {member.env_id} of pool {fleet.name} is {member.phase.value},"
                    " not in use: it was released already."
                )
            settings = fleet.settings
            if member.stopped_outside:  # its user called cleanup(): nothing left to stop
                forget = True
            elif settings.reset is not None and (
                settings.max_uses is None or member.uses < settings.max_uses
            ):
                member.phase = Phase.RESETTING
            else:
                member.phase = Phase.RETIRING
                member.retired_at = time.monotonic()
        if forget:
            fleet.forget(member)
        else:
            fleet.changed()
