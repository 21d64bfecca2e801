"""Routing calls over a replica set: one replica per call, chosen by the balancer.

A call goes to a ready replica (``least_busy`` by default).  If it fails
*before reaching the server* (no connection could be opened: the container
or its server is gone), it is sent to another replica: that is always safe.
A call that reached a server which then died raises
:class:`~rayfine_core.errors.ContainerDiedError` to its caller: it may have
run, so only the caller can tell whether to try again.  Either way the
replica is retired and the keeper starts a new one; calls meanwhile go to
the others, and wait for the replacement when none is left.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Mapping, Optional, Sequence

from .. import errors
from .balance import Balancer
from .drive import PoolFlow, wait
from .fleet import Fleet
from .members import Member, Phase

log = logging.getLogger("rayfine")
WAIT_GRACE = 10.0
"""Seconds past ``start_timeout`` a call waits for a replica when none is ready."""


def never_arrived(error: BaseException) -> bool:
    """True when the call provably never reached a server (no connection could be opened)."""
    for each in (error, error.__cause__):
        if isinstance(each, errors.TransportError) and each.connect_failed:
            return True
    return False


class Router:
    """The replica-set policy over a :class:`~.fleet.Fleet`."""

    def __init__(self, fleet: Fleet, balancer: Balancer) -> None:
        self.fleet = fleet
        self.balancer = balancer
        self.wait_limit = fleet.options.start_timeout + WAIT_GRACE

    def missing(self, counts: Mapping[Phase, int], total: int) -> int:
        return self.fleet.settings.target - counts[Phase.READY] - counts[Phase.STARTING]

    def call(
        self, method: str, args: Sequence[Any], kwargs: Mapping[str, Any], timeout: Optional[float]
    ) -> PoolFlow[Any]:
        """Call ``method`` on one replica; resend to another if it never arrived."""
        tried: set[str] = set()
        last: Optional[BaseException] = None
        attempts = max(3, self.fleet.settings.target)
        while True:
            member = yield from self.take(tried, last)
            try:
                return (yield from member.life.call(method, args, kwargs, timeout))
            except errors.RayfineError as exc:
                if isinstance(exc, errors.ContainerDiedError):
                    self.fleet.retire(member, f"its container died during {method}()")
                tried.add(member.env_id)
                if not never_arrived(exc) or len(tried) >= attempts:
                    raise
                last = exc
                log.info(
                    "rayfine: pool %s: %s() never reached %s (%s); sending it to another replica",
                    self.fleet.name,
                    method,
                    member.env_id,
                    type(exc).__name__,
                )
            finally:
                self.give_back(member)

    def take(self, avoid: set[str], last: Optional[BaseException] = None) -> PoolFlow[Member]:
        """A ready replica not in ``avoid``, counted busy until :meth:`give_back`.

        :raises CapacityError: none became ready within ``start_timeout`` + 10 s.
        :raises StartError: starts keep failing and none is ready.
        """
        fleet = self.fleet
        deadline = time.monotonic() + self.wait_limit
        while True:
            with fleet.lock:
                seen = fleet.notifier.version
                fleet.check_usable()
                candidates = [m for m in fleet.members(Phase.READY) if m.env_id not in avoid]
                if candidates:
                    member = self.balancer.pick(candidates)
                    member.busy += 1
                    return member
                if fleet.failures.failing:
                    raise fleet.failure_error(wrap=True)
            left = deadline - time.monotonic()
            if left <= 0:
                error = errors.CapacityError(
                    f"No replica of {fleet.name} was ready within {self.wait_limit:g}s"
                    f" ({fleet.status()})."
                )
                raise error from last
            yield from wait(fleet.notifier, seen, left)

    def give_back(self, member: Member) -> None:
        with self.fleet.lock:
            member.busy -= 1
            drained = member.phase is Phase.RETIRING and member.busy == 0
        if drained:
            self.fleet.changed()  # the keeper may stop it now
