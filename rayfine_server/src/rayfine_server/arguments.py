"""Check a call's arguments against the method's signature before running any user code."""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Dict, List

from .errors import INVALID_ARGUMENTS, CallError
from .methods import Method

_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def check_arguments(method: Method, args: List[Any], kwargs: Dict[str, Any]) -> None:
    """Refuse arguments that do not bind to the signature.

    :raises CallError: ``invalid_arguments`` naming the problem and the signature.
    """
    if not method.accepts_any_keyword:
        for name in kwargs:
            if name not in method.keyword_names:
                raise _invalid(method, f"got an unexpected keyword argument {name!r}", name)
    try:
        bound = method.signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise _invalid(method, str(exc), None) from None
    if method.checks:
        problem = method.checks(bound.arguments)
        if problem is not None:
            raise _invalid(method, problem, None)


def _invalid(method: Method, problem: str, unknown: Any) -> CallError:
    hint = ""
    if isinstance(unknown, str):
        close = difflib.get_close_matches(unknown, method.keyword_names, n=1)
        if close:
            hint = f"; did you mean {close[0]!r}?"
    return CallError(
        INVALID_ARGUMENTS,
        f"{method.name}() {problem}{hint}; expected {method.name}{method.signature_text}",
        type_name="TypeError",
    )
