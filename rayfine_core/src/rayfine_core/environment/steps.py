"""Flows written once, run by the blocking API and by the asyncio API.

A flow (the generator methods of :class:`~rayfine_core.environment.life.Life`)
yields *steps*: an HTTP request to the environment's server, a blocking call
(the container engine, the filesystem, plugin hooks), a pause.  It decides
everything else itself.  A driver performs the steps: :func:`run` directly
in the calling thread, :func:`arun` on the event loop (HTTP with the asyncio
client, blocking calls in Rayfine's own worker threads, shielded from
cancellation so that what they started is always known), and sends each
result back into the flow, or throws the exception the step raised into it.

Flows get typed results through :func:`http`, :func:`blocking` and
:func:`sleep` (``response = yield from http(...)``), never from a bare ``yield``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Generator, Optional, TypeVar, Union, cast

from ..transport.channel import Channel
from ..transport.dialects import Request
from ..transport.wire import Response

T = TypeVar("T")
S = TypeVar("S")  # a step type: Step, or a superset of it (pools add Wait)
ENGINE_THREADS = 64
"""Worker threads for blocking steps of async flows (separate from the loop's default executor)."""


@dataclass(frozen=True)
class Http:
    """One request to a server; the flow receives the :class:`Response`.

    Transport failures arrive as :class:`~rayfine_core.errors.TransportError`
    or :class:`~rayfine_core.errors.CallTimeout`.  ``watch`` runs every few
    seconds while the answer is late (see :mod:`~rayfine_core.transport.client`).
    """

    channel: Channel
    request: Request
    timeout: Optional[float]
    watch: Optional[Callable[[], None]] = None


@dataclass(frozen=True)
class Blocking:
    """A blocking call; the flow receives its result."""

    fn: Callable[[], Any]


@dataclass(frozen=True)
class Sleep:
    seconds: float


Step = Union[Http, Blocking, Sleep]
Flow = Generator[Step, Any, T]


def http(
    channel: Channel,
    request: Request,
    timeout: Optional[float],
    watch: Optional[Callable[[], None]] = None,
) -> Flow[Response]:
    """Send ``request`` through ``channel`` and return the response."""
    return cast(Response, (yield Http(channel, request, timeout, watch)))


def blocking(fn: Callable[..., T], *args: Any) -> Flow[T]:
    """Run ``fn(*args)`` (in a worker thread under asyncio) and return its result."""
    return cast(T, (yield Blocking(lambda: fn(*args))))


def sleep(seconds: float) -> Flow[None]:
    yield Sleep(seconds)


# -- the blocking driver -----------------------------------------------------------------


def run(flow: Flow[T]) -> T:
    """Run ``flow`` to its end in this thread and return its result."""
    return drive(flow, perform)


def drive(flow: Generator[S, Any, T], perform_step: Callable[[S], Any]) -> T:
    """Run ``flow`` to its end in this thread, each step by ``perform_step``.

    A step's result is sent back into the flow, its exception thrown in (the
    flow decides; it re-raises what it does not handle).  A layer above may add
    steps of its own by passing a ``perform_step`` that handles them.
    """
    value: Any = None
    error: Optional[BaseException] = None
    while True:
        try:
            step = flow.send(value) if error is None else flow.throw(error)
        except StopIteration as stop:
            return cast(T, stop.value)
        value, error = None, None
        try:
            value = perform_step(step)
        except BaseException as exc:
            error = exc


def perform(step: Step) -> Any:
    """Perform one step in this thread; return what the flow is sent."""
    if isinstance(step, Http):
        request = step.request
        return step.channel.client().request(
            request.verb, request.path, request.body, step.timeout, step.watch
        )
    if isinstance(step, Blocking):
        return step.fn()
    time.sleep(step.seconds)
    return None


# -- the asyncio driver ------------------------------------------------------------------


async def arun(flow: Flow[T]) -> T:
    """Run ``flow`` to its end without blocking the event loop."""
    return await adrive(flow, aperform)


async def adrive(flow: Generator[S, Any, T], perform_step: Callable[[S], Awaitable[Any]]) -> T:
    """:func:`drive` on the event loop (a CancelledError too is thrown into the flow)."""
    value: Any = None
    error: Optional[BaseException] = None
    while True:
        try:
            step = flow.send(value) if error is None else flow.throw(error)
        except StopIteration as stop:
            return cast(T, stop.value)
        value, error = None, None
        try:
            value = await perform_step(step)
        except BaseException as exc:
            error = exc


async def aperform(step: Step) -> Any:
    """Perform one step without blocking the event loop."""
    if isinstance(step, Http):
        request, watch = step.request, step.watch
        awatch = None if watch is None else (lambda: in_thread(watch))
        client = step.channel.aclient()
        return await client.request(request.verb, request.path, request.body, step.timeout, awatch)
    if isinstance(step, Blocking):
        return await in_thread(step.fn)
    await asyncio.sleep(step.seconds)
    return None


class _EnginePool(concurrent.futures.Executor):
    """Worker threads for blocking work: daemon threads, made as needed up to ``size``.

    Not a ThreadPoolExecutor: its threads are joined before exit handlers run,
    and one started by a ``submit`` that Ctrl-C interrupted is never told to
    stop, so the process would hang at exit.  Daemon threads never hold exit
    up; Rayfine's exit handler waits for the starts it still needs.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._jobs: queue.SimpleQueue[tuple[concurrent.futures.Future[Any], Callable[[], Any]]]
        self._jobs = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0

    def submit(
        self, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._jobs.put((future, lambda: fn(*args, **kwargs)))
        with self._lock:
            if self._idle == 0 and self._threads < self._size:
                self._threads += 1
                threading.Thread(target=self._work, name="rayfine-engine", daemon=True).start()
        return future

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            future, job = self._jobs.get()
            with self._lock:
                self._idle -= 1
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(job())
            except BaseException as exc:  # handed to whoever waits for it
                future.set_exception(exc)


_pool: Optional[_EnginePool] = None


def engine_pool() -> concurrent.futures.Executor:
    """Rayfine's worker threads for blocking work (made on first use; new after a fork)."""
    global _pool
    if _pool is None:
        _pool = _EnginePool(ENGINE_THREADS)
    return _pool


def _after_fork_in_child() -> None:
    global _pool
    _pool = None  # its threads do not exist in the child


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


async def in_thread(fn: Callable[[], T]) -> T:
    """``fn()`` in a worker thread, awaited to the end even if the caller is cancelled."""
    loop = asyncio.get_running_loop()
    return await finish(loop.run_in_executor(engine_pool(), fn))


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
