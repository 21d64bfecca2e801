"""Run a call inside the plugins' ``rayfine_call`` wrappers, as a flow.

pluggy runs wrappers around a plain function; a call is a flow (its I/O may
be awaited), so the wrappers' generators are driven here instead, with the
same protocol: each wrapper yields to run what it wraps, gets the result
(or the error raised into it), and returns what the caller sees.  A wrapper
that yields again runs the call again (a retry).
"""

from __future__ import annotations

from typing import Any, Callable, Generator, Sequence

from ..errors import PluginError
from ..plugins.hookspecs import CallInfo
from ..plugins.manager import CallWrapper
from .steps import Flow


def wrapped(
    wrappers: Sequence[CallWrapper], call: CallInfo, inner: Callable[[], Flow[Any]]
) -> Flow[Any]:
    """``inner()`` run through ``wrappers`` (outermost first); returns what the outermost returns."""
    if not wrappers:
        return (yield from inner())
    outer, rest = wrappers[0], wrappers[1:]
    generator = outer(call=call)
    if not isinstance(generator, Generator):
        raise PluginError(f"rayfine_call wrapper {outer!r} must be a generator (it has no yield)")
    try:
        next(generator)  # the wrapper's code before its first yield
    except StopIteration as stop:
        return stop.value  # answered without running the call
    while True:
        try:
            result = yield from wrapped(rest, call, inner)
        except BaseException as exc:
            try:
                generator.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                generator.send(result)
            except StopIteration as stop:
                return stop.value
        call.attempt += 1  # the wrapper yielded again: run the call again
