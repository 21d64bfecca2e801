"""Stop a sync method whose call timed out or was cancelled, from outside its thread.

Python cannot kill a thread, but it can schedule an exception in one
(``PyThreadState_SetAsyncExc``): :class:`CallInterrupted` is raised in the
method at its next Python bytecode.  Code blocked inside one C call (a long
``time.sleep``, a socket read) is stopped when that call returns.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Optional, Tuple

_WAITING, _RUNNING, _INTERRUPTED, _DONE = range(4)


class CallInterrupted(BaseException):
    """Raised inside a sync method when its call timed out (a BaseException, so
    ``except Exception`` in user code does not swallow it)."""


class ThreadCall:
    """One sync call that runs in a worker thread and can be interrupted until it ends.

    At most one interrupt is ever scheduled, and any interrupt still pending
    when the call ends is cleared, so it can never hit the worker's next job.
    """

    __slots__ = ("_ident", "_lock", "_state", "args", "func")

    def __init__(self, func: Callable[..., Any], args: Tuple[Any, ...]) -> None:
        self.func = func
        self.args = args
        self._lock = threading.Lock()
        self._ident: Optional[int] = None
        self._state = _WAITING

    def run(self) -> Tuple[bool, Any]:
        """Run the call in this thread: ``(True, result)`` or ``(False, exception)``."""
        try:
            try:
                with self._lock:
                    if self._state != _WAITING:  # interrupted before it started
                        return False, CallInterrupted()
                    self._ident = threading.get_ident()
                    self._state = _RUNNING
                return True, self.func(*self.args)
            except BaseException as exc:
                return False, exc
            finally:
                self._finish()
        except CallInterrupted as exc:  # fired inside the finally, before the lock was taken
            self._finish()
            return False, exc

    def _finish(self) -> None:
        with self._lock:
            if self._state == _INTERRUPTED:
                _set_async_exc(self._ident, None)  # clear it if it has not fired yet
            self._state = _DONE

    def interrupt(self) -> bool:
        """Schedule CallInterrupted in the thread if the call has not ended; True if scheduled."""
        with self._lock:
            if self._state == _WAITING:
                self._state = _INTERRUPTED
                return True
            if self._state != _RUNNING:
                return False
            self._state = _INTERRUPTED
            return _set_async_exc(self._ident, CallInterrupted) == 1


def _set_async_exc(ident: Optional[int], exc: Optional[type]) -> int:
    if ident is None:
        return 0
    import ctypes  # imported on first interrupt only: it costs every start ~5 ms otherwise

    target = ctypes.py_object(exc) if exc is not None else None
    return int(ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), target))
