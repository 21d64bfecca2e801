"""Stop a sync method whose call timed out, from outside its worker thread.

Python cannot kill a thread, but it can schedule an exception in one
(``PyThreadState_SetAsyncExc``): :class:`CallInterrupted` is raised in the
method at its next Python bytecode.  Code blocked inside one C call (a long
``time.sleep``, a socket read) is stopped when that call returns.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any, Callable, Optional


class CallInterrupted(BaseException):
    """Raised inside a sync method when its call timed out (a BaseException, so
    ``except Exception`` in user code does not swallow it)."""


class ThreadCall:
    """One sync call in a worker thread that can be interrupted until it ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ident: Optional[int] = None
        self._finished = False

    def run(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self._ident = threading.get_ident()
        try:
            return func(*args, **kwargs)
        finally:
            with self._lock:
                self._finished = True

    def interrupt(self) -> bool:
        """Schedule CallInterrupted in the thread if the call still runs; True if scheduled."""
        with self._lock:
            if self._ident is None or self._finished:
                return False
            count = ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(self._ident), ctypes.py_object(CallInterrupted)
            )
            return count == 1
