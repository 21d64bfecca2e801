"""Pool flows: Life's flows plus one step of their own, waiting for the pool to change.

A pool operation (acquire, a routed call) is written once as a generator, like
:class:`~rayfine_core.environment.life.Life`'s flows, and may also yield
:class:`Wait`.  :func:`run` performs it in the calling thread, :func:`arun` on
the event loop; every other step goes to
:func:`rayfine_core.environment.steps.run` / :func:`~rayfine_core.environment.steps.arun`,
so it is performed exactly as an environment's own flows perform it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generator, Optional, TypeVar, Union, cast

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
    value: Any = None
    error: Optional[BaseException] = None
    while True:
        try:
            step = flow.send(value) if error is None else flow.throw(error)
        except StopIteration as stop:
            return cast(T, stop.value)
        value, error = None, None
        try:
            if isinstance(step, Wait):
                step.notifier.wait(step.seen, step.timeout)
            else:
                value = steps.run(_one(step))
        except BaseException as exc:  # the flow decides; it re-raises what it does not handle
            error = exc


async def arun(flow: PoolFlow[T]) -> T:
    """Run ``flow`` to its end without blocking the event loop."""
    value: Any = None
    error: Optional[BaseException] = None
    while True:
        try:
            step = flow.send(value) if error is None else flow.throw(error)
        except StopIteration as stop:
            return cast(T, stop.value)
        value, error = None, None
        try:
            if isinstance(step, Wait):
                await step.notifier.await_change(step.seen, step.timeout)
            else:
                value = await steps.arun(_one(step))
        except BaseException as exc:  # including CancelledError: the flow cleans up, re-raises
            error = exc


def _one(step: Step) -> steps.Flow[Any]:
    """A flow of the single ``step`` (so the environment's drivers perform it)."""
    return (yield step)
