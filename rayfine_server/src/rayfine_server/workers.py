"""A bounded pool of worker threads for sync user code, with stuck-thread accounting.

``max_threads`` is a hard limit: a thread whose call timed out or was
cancelled is interrupted (see :mod:`interrupt`), but if it is stuck in C code
it keeps its slot until that code returns.  Such threads are counted as
*stuck*; when every slot is stuck, :attr:`WorkerPool.overloaded` is true and
``/health`` says so, so the client can restart the container instead of
queueing calls forever.

All bookkeeping happens on the event loop thread; the worker threads only
run calls and report back with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections import deque
from typing import Any, Callable, Deque, Optional, Tuple

from .errors import OVERLOADED, TIMEOUT, CallError
from .interrupt import CallInterrupted, ThreadCall

logger = logging.getLogger(__name__)


class ThreadWaitTimeout(Exception):
    """The call's time ran out while it waited for a free worker thread."""


_QUEUED, _RUNNING, _FINISHED = range(3)


class _Job:
    __slots__ = ("abandoned", "call", "future", "state")

    def __init__(self, call: ThreadCall, future: asyncio.Future[Any]) -> None:
        self.call = call
        self.future = future
        self.abandoned = False
        self.state = _QUEUED


class WorkerPool:
    """Runs sync callables in at most ``max_threads`` threads.

    :param max_threads: the hard limit on threads running user code.
    """

    def __init__(self, max_threads: int) -> None:
        self.max_threads = max_threads
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._jobs: queue.SimpleQueue[Optional[_Job]] = queue.SimpleQueue()
        self._threads = 0
        self._idle = 0
        self._waiting: Deque[_Job] = deque()
        self.busy = 0
        """Calls running in a thread, stuck ones included."""
        self.stuck = 0
        """Threads still running a call nobody waits for any more."""
        self._start_failure: Optional[str] = None

    @property
    def overloaded(self) -> bool:
        """Whether no call can run: every slot is held by a stuck thread."""
        return self.stuck >= self.max_threads or (
            self._start_failure is not None and self.stuck >= self._threads
        )

    def status(self) -> dict:
        """``{"busy", "stuck", "max"}`` for ``/health``."""
        return {"busy": self.busy, "stuck": self.stuck, "max": self.max_threads}

    async def run(
        self, func: Callable[..., Any], *args: Any, timeout: Optional[float] = None
    ) -> Tuple[bool, Any]:
        """Run ``func(*args)`` in a worker thread: ``(True, result)`` or ``(False, exception)``.

        Whatever ``func`` raises, even ``SystemExit`` or ``KeyboardInterrupt``,
        is returned, not raised, so callers cannot mistake it for their own
        cancellation.  On timeout or cancellation the thread is interrupted
        and its slot stays taken (counted as stuck) until the code returns.

        :raises asyncio.TimeoutError: ``timeout`` passed while the call ran.
        :raises ThreadWaitTimeout: ``timeout`` passed before a thread was free.
        """
        loop = self._loop or self._bind()
        job = _Job(ThreadCall(func, args), loop.create_future())
        self._submit(job)
        timer = loop.call_later(timeout, self._expire, job) if timeout is not None else None
        try:
            return await job.future
        except asyncio.CancelledError:
            self._abandon(job)
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def _bind(self) -> asyncio.AbstractEventLoop:
        self._loop = asyncio.get_running_loop()
        return self._loop

    def _submit(self, job: _Job) -> None:
        if self._idle:
            self._idle -= 1
            self._start(job)
        elif self._threads < self.max_threads and self._spawn():
            self._start(job)
        else:
            if self._threads == 0:
                raise CallError(
                    OVERLOADED, f"No worker thread could be started: {self._start_failure}"
                )
            self._waiting.append(job)

    def _start(self, job: _Job) -> None:
        job.state = _RUNNING
        self.busy += 1
        self._jobs.put(job)

    def _spawn(self) -> bool:
        name = f"rayfine-worker-{self._threads + 1}"
        try:
            threading.Thread(target=self._work, name=name, daemon=True).start()
        except RuntimeError as exc:  # "can't start new thread": pids limit, memory
            if self._start_failure is None:
                logger.error("Could not start worker thread %s: %s", name, exc)
            self._start_failure = str(exc)
            return False
        self._start_failure = None
        self._threads += 1
        return True

    def _work(self) -> None:
        """A worker thread: run jobs until told to stop (``None``)."""
        loop = self._loop
        assert loop is not None
        while True:
            job = self._jobs.get()
            if job is None:
                return
            outcome = job.call.run()
            try:
                loop.call_soon_threadsafe(self._finished, job, outcome)
            except RuntimeError:  # the loop is closed: the server is exiting
                return

    def _finished(self, job: _Job, outcome: Any) -> None:
        """Back on the loop: settle the caller's future and hand the thread on."""
        job.state = _FINISHED
        self.busy -= 1
        if job.abandoned:
            self.stuck -= 1
        if not job.future.done():
            job.future.set_result(outcome)
        while self._waiting:
            waiting = self._waiting.popleft()
            if not waiting.future.done():
                self._start(waiting)
                return
        self._idle += 1

    def _expire(self, job: _Job) -> None:
        """The call's timeout passed: fail it now and interrupt its thread."""
        if job.future.done():
            return
        if job.state == _RUNNING:
            job.future.set_exception(asyncio.TimeoutError())
        else:
            job.future.set_exception(ThreadWaitTimeout(self._wait_message()))
        self._abandon(job)

    def _abandon(self, job: _Job) -> None:
        if job.state == _QUEUED:
            job.call.interrupt()  # it never starts; its queue entry is skipped
            if not job.future.done():
                job.future.cancel()
            return
        if job.state == _RUNNING and not job.abandoned:
            job.abandoned = True
            self.stuck += 1
            job.call.interrupt()

    def _wait_message(self) -> str:
        return (
            f"all {self.max_threads} worker threads were busy ({self.stuck} stuck in calls that"
            " timed out); raise RAYFINE_MAX_THREADS or make sync methods async"
        )

    def shutdown(self) -> None:
        """Let idle threads exit (busy ones are daemons and die with the process)."""
        for _ in range(self._threads):
            self._jobs.put(None)


def timeout_while_waiting(exc: ThreadWaitTimeout, what: str, timeout: float) -> CallError:
    """The ``timeout`` error for a call that never got a thread."""
    return CallError(
        TIMEOUT, f"{what} did not start within {timeout:g} s: {exc}", type_name="TimeoutError"
    )


__all__ = ["CallInterrupted", "ThreadWaitTimeout", "WorkerPool", "timeout_while_waiting"]
