"""Pool flows: Life's flows plus one step of their own, waiting for the pool to change.

A pool operation (acquire, a routed call) is written once as a generator, like
:class:`~rayfine_core.environment.life.Life`'s flows, and may also yield
:class:`Wait`.  :func:`run` performs it in the calling thread, :func:`arun` on
the event loop, both through the environment's drivers
(:func:`rayfine_core.environment.steps.drive` / :func:`~rayfine_core.environment.steps.adrive`),
so every other step is performed exactly as an environment's own flows perform it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generator, Optional, TypeVar, Union

from ..environment import steps
from ..environment.steps import Step
from .notify import Notifier

T = TypeVar("T")


@dataclass(frozen=True)
class Wait:
    """Pause until ``notifier`` moves past version ``seen``, or ``timeout`` seconds pass."""

    notifier: Notifier
    seen: int
    timeout: Optional[float]


PoolStep = Union[Step, Wait]
PoolFlow = Generator[PoolStep, Any, T]


def wait(notifier: Notifier, seen: int, timeout: Optional[float]) -> PoolFlow[None]:
    yield Wait(notifier, seen, timeout)


def run(flow: PoolFlow[T]) -> T:
    """Run ``flow`` to its end in this thread."""
    return steps.drive(flow, _perform)


async def arun(flow: PoolFlow[T]) -> T:
    """Run ``flow`` to its end without blocking the event loop."""
    return await steps.adrive(flow, _aperform)


def _perform(step: PoolStep) -> Any:
    if isinstance(step, Wait):
        return step.notifier.wait(step.seen, step.timeout)
    return steps.perform(step)


async def _aperform(step: PoolStep) -> Any:
    if isinstance(step, Wait):
        return await step.notifier.await_change(step.seen, step.timeout)
    return await steps.aperform(step)
