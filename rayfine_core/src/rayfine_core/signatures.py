"""Check call arguments against a remote method's signature, on the client.

A mistake in the arguments is reported before any HTTP round trip, naming
the expected signature.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping, Optional, Sequence

from .errors import InvalidArgumentsError
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
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise InvalidArgumentsError(
            "TypeError", f"{exc}; expected {info.name}{info.signature}", method=info.name
        ) from None
