"""Run one method call: look it up, check its arguments, run it, encode the result.

Async methods are awaited on the event loop, so many interleave; sync ones
run in the worker pool, so a slow sync method never stalls the loop.  Every
failure leaves as a :class:`CallError`; whatever user code raises, even
``KeyboardInterrupt`` or ``SystemExit``, is a ``remote_exception``.
"""

from __future__ import annotations

import asyncio
import difflib
import inspect
from typing import Any, Callable, Dict, List, Optional

from .actor import DefaultActor
from .arguments import check_arguments
from .call_request import CallRequest
from .encoding import NotSerializableError, encode_json
from .errors import (
    INTERNAL_ERROR,
    METHOD_NOT_FOUND,
    NOT_SERIALIZABLE,
    REMOTE_EXCEPTION,
    SESSION_CLOSED,
    TIMEOUT,
    UNKNOWN_SESSION,
    CallError,
    safe_str,
)
from .loader import LoadedEnv
from .methods import Method
from .request import SESSION_CLOSED as CANCELLED_BY_CLOSE
from .request import Request
from .sessions import Session, SessionManager
from .workers import ThreadWaitTimeout, WorkerPool


class Dispatcher:
    """Calls the methods of one loaded environment.

    :param env: the successfully loaded env.py.
    :param pool: worker threads for sync methods.
    :param default: the default Actor instance, if env.py has an Actor.
    :param sessions: the env's sessions, if env.py has an Actor.
    """

    def __init__(
        self,
        env: LoadedEnv,
        pool: WorkerPool,
        default: Optional[DefaultActor],
        sessions: Optional[SessionManager],
    ) -> None:
        self._env = env
        self._methods = env.methods
        self._pool = pool
        self._default = default
        self._sessions = sessions

    async def call(self, request: Request, call: CallRequest) -> bytes:
        """Run ``call`` and return the ``{"result": ...}`` response body.

        :raises CallError: whatever went wrong, with the kind the client expects.
        :raises asyncio.CancelledError: the client went away or the server is stopping.
        """
        session = self._session(call.session) if call.session is not None else None
        method = self._lookup(call.method)
        check_arguments(method, call.args, call.kwargs)
        if session is None:
            value = await self._run(request, method, call, None)
        else:
            session.enter(request)
            try:
                value = await self._run(request, method, call, session)
            finally:
                session.leave(request)
        try:
            encoded = encode_json(value)
        except NotSerializableError as exc:
            raise CallError(
                NOT_SERIALIZABLE,
                f"{method.name}() returned a value that is not JSON-serialisable: {exc}",
                type_name="TypeError",
            ) from None
        except Exception as exc:
            raise CallError(
                NOT_SERIALIZABLE,
                f"{method.name}() returned a value that failed to serialise:"
                f" {type(exc).__name__}: {safe_str(exc)}",
                type_name=type(exc).__name__,
            ) from None
        return b'{"result":' + encoded + b"}"

    def _session(self, session_id: str) -> Session:
        if self._sessions is None:
            raise CallError(UNKNOWN_SESSION, "env.py defines no Actor class, so it has no sessions")
        return self._sessions.get(session_id)

    def _lookup(self, name: str) -> Method:
        """The method called ``name``, or a ``method_not_found`` error listing the others."""
        method = self._methods.get(name)
        if method is not None:
            return method
        available = ", ".join(self._methods) or "(none)"
        if name.startswith("_"):
            reason = f"{name!r} is private: names starting with '_' cannot be called"
        elif self._env.module is not None and hasattr(self._env.module, name):
            reason = f"{name!r} is not a public function defined in env.py or a method of Actor"
        else:
            reason = f"No method {name!r}"
            close = difflib.get_close_matches(name, list(self._methods), n=1)
            if close:
                reason += f" (did you mean {close[0]!r}?)"
        raise CallError(METHOD_NOT_FOUND, f"{reason}. Available methods: {available}")

    async def _run(
        self, request: Request, method: Method, call: CallRequest, session: Optional[Session]
    ) -> Any:
        """The method's return value; timeouts, cancellation and user errors as CallError."""
        deadline = _Deadline(call.timeout) if call.timeout is not None else None
        try:
            target = await self._target(method, session)
            if method.is_async:
                return await _call_async(target, call.args, call.kwargs)
            if deadline is not None:
                deadline.cancel()  # the pool applies what is left, and knows more
            return await self._call_sync(method, target, call, deadline)
        except asyncio.CancelledError:
            if deadline is not None and deadline.expired:
                raise self._timeout(method, call.timeout or 0.0) from None
            if request.cancel_reason == CANCELLED_BY_CLOSE and session is not None:
                raise CallError(
                    SESSION_CLOSED,
                    f"Session {session.id} was closed while {method.name}() ran; it was cancelled",
                ) from None
            if request.cancel_reason is None:  # raised by the method itself
                raise CallError(
                    REMOTE_EXCEPTION,
                    f"{method.name}() raised CancelledError",
                    type_name="CancelledError",
                ) from None
            raise
        finally:
            if deadline is not None:
                deadline.cancel()

    async def _target(self, method: Method, session: Optional[Session]) -> Callable[..., Any]:
        """The function to call: bound to the right Actor instance for Actor methods."""
        if method.function is not None:
            return method.function
        if session is not None:
            return getattr(session.instance, method.name)
        if self._default is None:  # discover_methods only makes Actor methods with an Actor
            raise CallError(INTERNAL_ERROR, f"{method.name} has no Actor to run on")
        return getattr(await self._default.get(), method.name)

    async def _call_sync(
        self,
        method: Method,
        target: Callable[..., Any],
        call: CallRequest,
        deadline: Optional[_Deadline],
    ) -> Any:
        timeout = deadline.remaining() if deadline is not None else None
        try:
            ok, value = await self._pool.run(
                _apply, target, call.args, call.kwargs, timeout=timeout
            )
        except asyncio.TimeoutError:
            raise self._timeout(method, call.timeout or 0.0) from None
        except ThreadWaitTimeout as exc:
            message = f"{method.name}() did not start within {call.timeout:g} s: {exc}"
            raise CallError(TIMEOUT, message, type_name="TimeoutError") from None
        if not ok:
            raise CallError.from_exception(REMOTE_EXCEPTION, value)
        if inspect.isawaitable(value):  # a sync wrapper around a coroutine function
            left = _Deadline(deadline.remaining()) if deadline is not None else None
            try:
                return await _call_async(_returning(value), [], {})
            except asyncio.CancelledError:
                if left is not None and left.expired:
                    raise self._timeout(method, call.timeout or 0.0) from None
                raise
            finally:
                if left is not None:
                    left.cancel()
        return value

    def _timeout(self, method: Method, timeout: float) -> CallError:
        """A ``timeout`` error saying whether the user's code is still running."""
        message = f"{method.name}() did not finish within {timeout:g} s"
        if method.function is None and self._default is not None and self._default.building:
            message += (
                " because Actor() was still being constructed. Construction runs in a"
                " worker thread and goes on in the background; the next call waits for it."
            )
        elif method.is_async:
            message += " and was cancelled."
        else:
            message += (
                ". It is a sync method: it was interrupted at its next Python instruction"
                " (a blocking C call such as a long sleep or read finishes first)."
            )
        return CallError(TIMEOUT, message, type_name="TimeoutError")


class _Deadline:
    """Cancels the current task when a call's time is up, and remembers that it did."""

    __slots__ = ("_end", "_handle", "_loop", "_settled", "expired")

    def __init__(self, timeout: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._end = self._loop.time() + timeout
        self.expired = False
        self._settled = False
        task = asyncio.current_task()
        assert task is not None, "a call runs in a task"
        self._handle = self._loop.call_at(self._end, self._expire, task)

    def _expire(self, task: asyncio.Task[Any]) -> None:
        self.expired = True
        task.cancel()

    def remaining(self) -> float:
        return max(0.0, self._end - self._loop.time())

    def cancel(self) -> None:
        self._handle.cancel()
        if self.expired and not self._settled:
            self._settled = True
            task = asyncio.current_task()
            uncancel = getattr(task, "uncancel", None)  # 3.11+: the cancel was handled here
            if uncancel is not None:
                uncancel()


def _apply(func: Callable[..., Any], args: List[Any], kwargs: Dict[str, Any]) -> Any:
    return func(*args, **kwargs)


def _returning(value: Any) -> Callable[[], Any]:
    async def wait() -> Any:
        return await value

    return wait


async def _call_async(func: Callable[..., Any], args: List[Any], kwargs: Dict[str, Any]) -> Any:
    """Await an async user function on the loop, wrapping whatever it raises."""
    try:
        return await func(*args, **kwargs)
    except asyncio.CancelledError:
        raise  # who cancelled is decided by the caller
    except BaseException as exc:
        raise CallError.from_exception(REMOTE_EXCEPTION, exc) from None
