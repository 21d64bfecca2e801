"""Check call arguments against a remote method's signature, on the client.

A mistake in the arguments is reported before any HTTP round trip, naming
the expected signature: a missing or unknown argument (with the closest
name: ``step(actoin=1)`` says "did you mean 'action'?"), and a value that
cannot fit the parameter's annotation (``evaluate(answers="12")`` for
``answers: list[str]``; see :mod:`.annotations` for what is understood).
The server checks again; this only saves a round trip and names the cause.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Mapping, Optional, Sequence

from ..errors import InvalidArgumentsError
from .annotations import describe, parse
from .protocol import MethodInfo, Param

_NO_DEFAULT = inspect.Parameter.empty


def to_signature(info: MethodInfo) -> Optional[inspect.Signature]:
    """Rebuild an :class:`inspect.Signature` from the server's description."""
    try:
        return inspect.Signature([_parameter(p) for p in info.params])
    except (AttributeError, ValueError, TypeError):
        return None  # an unusual signature: let the server judge


def _parameter(param: Param) -> inspect.Parameter:
    kind = getattr(inspect.Parameter, param.kind)
    variadic = kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    default = _NO_DEFAULT if param.required or variadic else param.default
    return inspect.Parameter(param.name, kind, default=default)


def check_arguments(
    info: MethodInfo,
    signature: Optional[inspect.Signature],
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
) -> None:
    """Raise InvalidArgumentsError if ``args``/``kwargs`` do not bind to the method."""
    if signature is None:
        return
    problem = _unknown_keyword(signature, kwargs)
    if problem is None:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as exc:
            problem = str(exc)
        else:
            problem = _mistyped(info, bound)
    if problem is not None:
        raise InvalidArgumentsError(
            "TypeError", f"{problem}; expected {info.name}{info.signature}", method=info.name
        )


def _unknown_keyword(signature: inspect.Signature, kwargs: Mapping[str, Any]) -> Optional[str]:
    """A keyword the method does not take, with the closest one it does (typos come first:
    ``step(actoin=1)`` should say so, not that ``action`` is missing)."""
    params = signature.parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    names = [p.name for p in params if p.kind is not inspect.Parameter.POSITIONAL_ONLY]
    for key in kwargs:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            return f"got an unexpected keyword argument {key!r}{hint}"
    return None


def _mistyped(info: MethodInfo, bound: inspect.BoundArguments) -> Optional[str]:
    """The first argument whose value cannot fit its parameter's annotation."""
    annotations = {p.name: p.annotation for p in info.params if p.annotation}
    if not annotations:
        return None
    for name, value in bound.arguments.items():
        kind = parse(annotations.get(name))
        if kind.name == "any":
            continue
        param = bound.signature.parameters[name]
        if value is None and param.default is None:
            continue  # `x: str = None`, the old spelling of Optional[str]
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            values = list(value)
        elif param.kind is inspect.Parameter.VAR_KEYWORD:
            values = list(value.values())
        else:
            values = [value]
        for each in values:
            if not kind.accepts(each):
                return f"argument {name!r} must be {annotations[name]}, got {describe(each)}"
    return None
