"""Run one method call: look it up, check its arguments, run it, encode the result.

Async methods are awaited on the event loop, so many interleave; sync ones
run in worker threads bounded by a capacity limiter, so a slow sync method
never stalls the loop.  Every failure leaves as a :class:`CallError`.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable
from contextlib import nullcontext
from functools import partial
from typing import Any, Callable, Optional

import anyio
import anyio.to_thread
from anyio import CapacityLimiter

from .actor import ActorHolder
from .call_request import CallRequest
from .encoding import NotSerializableError, encode_json
from .errors import (
    INTERNAL_ERROR,
    INVALID_ARGUMENTS,
    METHOD_NOT_FOUND,
    NOT_SERIALIZABLE,
    REMOTE_EXCEPTION,
    TIMEOUT,
    CallError,
)
from .interrupt import CallInterrupted, ThreadCall
from .loader import LoadedEnv
from .methods import ACTOR, Method

logger = logging.getLogger(__name__)


class Dispatcher:
    """Calls the methods of one loaded environment.

    :param env: the successfully loaded env.py.
    :param max_threads: how many sync methods may run at once.
    """

    def __init__(self, env: LoadedEnv, max_threads: int) -> None:
        self._env = env
        self._methods = env.methods
        self._actor = ActorHolder(env.actor_class) if env.actor_class is not None else None
        self._max_threads = max_threads
        self._limiter: Optional[CapacityLimiter] = None

    async def call(self, request: CallRequest) -> bytes:
        """Run ``request`` and return the ``{"result": ...}`` response body.

        :raises CallError: whatever went wrong, with the kind the client expects.
        """
        method = self._lookup(request.method)
        _check_arguments(method, request)
        try:
            # No timeout, no cancel scope: entering one costs more than the rest of a call.
            with (
                anyio.fail_after(request.timeout) if request.timeout is not None else nullcontext()
            ):
                value = await self._invoke(method, request)
        except TimeoutError:
            constructing = (
                method.kind == ACTOR and self._actor is not None and not self._actor.ready
            )
            raise _timeout_error(method, request.timeout or 0.0, constructing) from None
        except CallError:
            raise
        except Exception as exc:  # a bug here, not in user code: keep serving
            logger.exception("Internal error while calling %s", method.name)
            raise CallError(INTERNAL_ERROR, f"{type(exc).__name__}: {exc}") from None
        try:
            encoded = encode_json(value)
        except NotSerializableError as exc:
            raise CallError(
                NOT_SERIALIZABLE,
                f"{method.name}() returned a value that is not JSON-serialisable: {exc}",
            ) from None
        return b'{"result":' + encoded + b"}"

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
        raise CallError(METHOD_NOT_FOUND, f"{reason}. Available methods: {available}")

    async def _invoke(self, method: Method, request: CallRequest) -> Any:
        """Run the user's code for ``method`` and return what it returned."""
        target = await self._target(method)
        if method.is_async:
            return await _call_async(target, request.args, request.kwargs)
        call = ThreadCall()
        try:
            result = await anyio.to_thread.run_sync(
                partial(call.run, _call_sync, target, request.args, request.kwargs),
                limiter=self._thread_limiter(),
                # On timeout, answer now; the thread is interrupted below.
                abandon_on_cancel=True,
            )
        except anyio.get_cancelled_exc_class():
            call.interrupt()
            raise
        if inspect.isawaitable(result):  # a sync wrapper around a coroutine function
            result = await _call_async(lambda: result, [], {})
        return result

    async def _target(self, method: Method) -> Callable[..., Any]:
        """The function to call: bound to the Actor instance for Actor methods."""
        if method.function is not None:
            return method.function
        if self._actor is None:  # discover_methods only makes Actor methods with an Actor
            raise CallError(INTERNAL_ERROR, f"{method.name} has no Actor to run on")
        instance = await self._actor.get(self._thread_limiter())
        return getattr(instance, method.name)

    def _thread_limiter(self) -> CapacityLimiter:
        """The limiter for worker threads, created on first use inside the event loop."""
        if self._limiter is None:
            self._limiter = CapacityLimiter(self._max_threads)
        return self._limiter


def _check_arguments(method: Method, request: CallRequest) -> None:
    """Refuse arguments that do not bind to the signature, before running anything."""
    try:
        method.signature.bind(*request.args, **request.kwargs)
    except TypeError as exc:
        raise CallError(
            INVALID_ARGUMENTS,
            f"{exc}; expected {method.name}{method.signature_text}",
            type_name="TypeError",
        ) from None


def _call_sync(func: Callable[..., Any], args: list, kwargs: dict) -> Any:
    """Call a sync user function (in a worker thread), wrapping what it raises."""
    try:
        return func(*args, **kwargs)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - SystemExit must not stop the server
        raise CallError.from_exception(REMOTE_EXCEPTION, exc) from None
    except CallInterrupted:
        return None  # the call timed out; nobody waits for this result


async def _call_async(func: Callable[..., Awaitable[Any]], args: list, kwargs: dict) -> Any:
    """Await an async user function on the loop, wrapping what it raises."""
    try:
        return await func(*args, **kwargs)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - reported to the caller
        raise CallError.from_exception(REMOTE_EXCEPTION, exc) from None


def _timeout_error(method: Method, timeout: float, constructing: bool) -> CallError:
    """A ``timeout`` error saying whether the user's code is still running."""
    message = f"{method.name}() did not finish within {timeout:g} s"
    if constructing:
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
