"""Check call arguments against a remote method's signature, on the client.

A mistake in the arguments is reported before any HTTP round trip, naming
the expected signature.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping, Optional, Sequence

from .errors import InvalidArgumentsError
from .protocol import MethodInfo

_NO_DEFAULT = inspect.Parameter.empty


def to_signature(info: MethodInfo) -> Optional[inspect.Signature]:
    """Rebuild an :class:`inspect.Signature` from the server's description."""
    try:
        params = [
            inspect.Parameter(p.name, getattr(inspect.Parameter, p.kind), default=_NO_DEFAULT if p.required else p.default)
            for p in info.params
        ]
        return inspect.Signature(params)
    except (AttributeError, ValueError, TypeError):
        return None  # an unusual signature: let the server judge


def check_arguments(info: MethodInfo, signature: Optional[inspect.Signature], args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    """Raise InvalidArgumentsError if ``args``/``kwargs`` do not bind to the method."""
    if signature is None:
        return
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise InvalidArgumentsError(
            "TypeError", f"{exc}; expected {info.name}{info.signature}", method=info.name
        ) from None
