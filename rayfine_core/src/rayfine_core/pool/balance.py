"""How a replica set picks the replica for a call: least busy, round robin, or at random."""

from __future__ import annotations

import random
from typing import Protocol, Sequence

from ..errors import ValidationError
from .members import Member

LEAST_BUSY, ROUND_ROBIN, RANDOM = "least_busy", "round_robin", "random"
CHOICES = (LEAST_BUSY, ROUND_ROBIN, RANDOM)


class Balancer(Protocol):
    def pick(self, candidates: Sequence[Member]) -> Member:
        """One of ``candidates`` (never empty); called under the pool's lock."""


class LeastBusy:
    """The replica with the fewest calls in flight; ties taken in turn, so equal loads spread."""

    def __init__(self) -> None:
        self._turn = 0

    def pick(self, candidates: Sequence[Member]) -> Member:
        self._turn += 1
        start = self._turn % len(candidates)
        rotated = [*candidates[start:], *candidates[:start]]
        return min(rotated, key=lambda member: member.busy)


class RoundRobin:
    """Each ready replica in turn, whatever its load."""

    def __init__(self) -> None:
        self._turn = 0

    def pick(self, candidates: Sequence[Member]) -> Member:
        self._turn += 1
        return candidates[self._turn % len(candidates)]


class Random:
    """A ready replica chosen uniformly at random."""

    def pick(self, candidates: Sequence[Member]) -> Member:
        return random.choice(candidates)


def balancer(name: str) -> Balancer:
    """The balancer called ``name`` (one of :data:`CHOICES`)."""
    if name == LEAST_BUSY:
        return LeastBusy()
    if name == ROUND_ROBIN:
        return RoundRobin()
    if name == RANDOM:
        return Random()
    raise ValidationError(
        f"Unknown load_balance {name!r}. Choose one of: {', '.join(map(repr, CHOICES))}."
    )
