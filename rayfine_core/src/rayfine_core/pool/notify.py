"""Wake whoever waits for a pool to change: blocked threads and asyncio tasks alike.

A waiter first reads :attr:`Notifier.version`, looks at the pool, and if it
must wait, waits *for a version other than the one it read*: a change made
between its look and its wait is never missed.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Optional


class Notifier:
    """A version counter with waiters; :meth:`notify` wakes every waiter."""

    def __init__(self) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._version = 0
        self._futures: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()

    @property
    def version(self) -> int:
        return self._version

    def notify(self) -> None:
        with self._changed:
            self._version += 1
            self._changed.notify_all()
            futures, self._futures = self._futures, set()
        for loop, future in futures:
            try:
                loop.call_soon_threadsafe(_wake, future)
            except RuntimeError:  # its loop is closed: nobody waits there any more
                pass

    def wait(self, seen: int, timeout: Optional[float]) -> None:
        """Block until the version differs from ``seen`` or ``timeout`` seconds pass."""
        with self._changed:
            if self._version == seen:
                self._changed.wait(timeout)

    async def await_change(self, seen: int, timeout: Optional[float]) -> None:
        """:meth:`wait` for a coroutine: the event loop keeps running meanwhile."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        entry = (loop, future)
        with self._changed:
            if self._version != seen:
                return
            self._futures.add(entry)
        try:
            await asyncio.wait({future}, timeout=timeout)
        finally:
            with self._changed:
                self._futures.discard(entry)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
