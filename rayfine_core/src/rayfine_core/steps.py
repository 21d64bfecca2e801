"""Flows written once, run by the blocking API and by the asyncio API.

A flow (see :mod:`rayfine_core.flows`) is a generator that yields *steps*:
an HTTP request to the environment's server, a blocking call into the
container engine, a pause.  It decides everything else itself: when the
server is ready, what a failed call means, when to give up.  A driver
performs the steps: :func:`run` directly in the calling thread,
:func:`arun` on the event loop (HTTP with the asyncio client, engine calls
in worker threads), and sends each result back into the flow, or throws
the exception the step raised into it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import (
    TYPE_CHECKING,
    Any,
    Awaitable,
    Callable,
    Generator,
    Optional,
    Protocol,
    TypeVar,
    Union,
)

if TYPE_CHECKING:
    from .wire import Response

T = TypeVar("T")


@dataclass(frozen=True)
class Http:
    """One request to the environment's server; the flow receives the ``Response``.

    Transport failures arrive as :class:`~rayfine_core.errors.TransportError`
    or :class:`~rayfine_core.errors.CallTimeout`.
    """

    verb: str
    path: str
    body: Optional[bytes] = None
    timeout: Optional[float] = 10.0


@dataclass(frozen=True)
class Engine:
    """A blocking call (the container engine, the filesystem, plugin hooks); receives its result."""

    fn: Callable[..., Any]
    args: tuple = ()


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Reconnect:
    """Point the HTTP client at the container's (new) endpoint."""


Step = Union[Http, Engine, Sleep, Reconnect]
Flow = Generator[Step, Any, T]


class BlockingIO(Protocol):
    def _http(self, step: Http) -> "Response": ...

    def _reconnect(self) -> None: ...


class AsyncIO(Protocol):
    async def _ahttp(self, step: Http) -> "Response": ...

    async def _areconnect(self) -> None: ...


def run(flow: Flow[T], io: BlockingIO) -> T:
    """Run ``flow`` to its end in this thread and return its result."""
    runner = _Runner(flow)
    while not runner.done:
        runner.resume(*_outcome(_perform, runner.step, io))
    return runner.result


async def arun(flow: Flow[T], io: AsyncIO) -> T:
    """Run ``flow`` to its end without blocking the event loop."""
    runner = _Runner(flow)
    while not runner.done:
        runner.resume(*await _aoutcome(_aperform(runner.step, io)))
    return runner.result


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a worker thread, awaited to the end even if the caller is cancelled."""
    return await finish(asyncio.to_thread(fn, *args))


async def finish(awaitable: Awaitable[T]) -> T:
    """Await ``awaitable`` to its end even if the caller is cancelled meanwhile, then
    re-raise the cancellation.  For work that must not be cut short: a thread
    cannot be stopped, and the container it was starting must be known to be
    cleaned up; a cleanup must not leave half the containers running."""
    task = asyncio.ensure_future(awaitable)
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        if not task.cancelled():
            task.exception()  # retrieved: what the caller sees is its cancellation
        raise asyncio.CancelledError
    return task.result()


def _perform(step: Step, io: BlockingIO) -> Any:
    if isinstance(step, Http):
        return io._http(step)
    if isinstance(step, Engine):
        return step.fn(*step.args)
    if isinstance(step, Sleep):
        return time.sleep(step.seconds)
    return io._reconnect()


async def _aperform(step: Step, io: AsyncIO) -> Any:
    if isinstance(step, Http):
        return await io._ahttp(step)
    if isinstance(step, Engine):
        return await in_thread(step.fn, *step.args)
    if isinstance(step, Sleep):
        return await asyncio.sleep(step.seconds)
    return await io._areconnect()


def _outcome(fn: Callable[..., Any], *args: Any) -> tuple[bool, Any]:
    try:
        return True, fn(*args)
    except BaseException as exc:  # the flow decides; it re-raises what it does not handle
        return False, exc


async def _aoutcome(awaitable: Any) -> tuple[bool, Any]:
    try:
        return True, await awaitable
    except BaseException as exc:  # including CancelledError: the flow cleans up, then re-raises
        return False, exc


class _Runner:
    """Feeds results and exceptions into a flow and holds its next step."""

    def __init__(self, flow: Flow[Any]) -> None:
        self._flow = flow
        self.done = False
        self.result: Any = None
        self.step: Step = Reconnect()
        self._advance(flow.send, None)

    def resume(self, ok: bool, value: Any) -> None:
        self._advance(self._flow.send if ok else self._flow.throw, value)

    def _advance(self, method: Callable[[Any], Step], value: Any) -> None:
        try:
            self.step = method(value)
        except StopIteration as stop:
            self.done, self.result = True, stop.value
