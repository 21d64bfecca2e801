"""Decode and check the JSON bodies of ``POST /call`` and ``POST /sessions``.

Parsed by hand rather than through a schema library: it is the hot path,
the shapes are tiny, and each refusal can say exactly what is wrong.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Union

from .errors import BAD_REQUEST, CallError
from .jsonlimits import MAX_DEPTH, exceeds_depth, items

_CALL_FIELDS = ("method", "args", "kwargs", "timeout", "session")
_SESSION_FIELDS = ("args", "kwargs", "timeout", "idle_timeout")
_MAX_INT_DIGITS = 4300  # CPython's own default limit (3.11+, 3.10.7+, 3.9.14+)


@dataclass(frozen=True)
class CallRequest:
    """One method call as the client asked for it.

    :param method: name of the method to call.
    :param args: positional arguments.
    :param kwargs: keyword arguments.
    :param timeout: seconds the call may take; ``None`` for no limit.
    :param session: id of the session to call in; ``None`` for the default instance.
    """

    method: str
    args: List[Any] = field(default_factory=list)
    kwargs: Dict[str, Any] = field(default_factory=dict)
    timeout: Optional[float] = None
    session: Optional[str] = None


@dataclass(frozen=True)
class SessionRequest:
    """A request to open a session: ``Actor(*args, **kwargs)`` and its limits."""

    args: List[Any] = field(default_factory=list)
    kwargs: Dict[str, Any] = field(default_factory=dict)
    timeout: Optional[float] = None
    idle_timeout: Optional[float] = None


def decode_json(body: Union[bytes, bytearray], max_items: int) -> Any:
    """``json.loads`` that refuses, as ``bad_request``, what would hurt the server.

    Refused before parsing: nesting deeper than :data:`MAX_DEPTH` (it would
    exhaust the recursion limit) and more than ``max_items`` values (tiny
    values take many times their size in memory once parsed).  Integers
    longer than 4,300 digits are refused too, on interpreters without that
    limit built in (converting them takes quadratic time).
    """
    if exceeds_depth(body):
        raise _bad(f"Request body nests arrays/objects deeper than {MAX_DEPTH} levels")
    count = items(body, max_items)
    if count > max_items:
        raise _bad(
            f"Request body holds about {count} JSON values, more than {max_items}"
            " (RAYFINE_MAX_BODY_BYTES / 16): parsed, they would take many times its size in"
            " memory. Send large arrays as text (e.g. base64) or split the call"
        )
    try:
        if _NEEDS_INT_GUARD:
            return json.loads(body, parse_int=_bounded_int)
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise _bad(f"Request body is not valid JSON: {exc}") from None


def parse_call_request(body: Union[bytes, bytearray], max_items: int) -> CallRequest:
    """Decode and check a ``POST /call`` body (see :func:`decode_json` for ``max_items``).

    :raises CallError: ``bad_request`` naming the first problem found.
    """
    payload = _object(decode_json(body, max_items), _CALL_FIELDS)
    method = payload.get("method")
    if not isinstance(method, str) or not method:
        raise _bad(f"'method' must be a non-empty string, got {json_type(method)}")
    session = payload.get("session")
    if session is not None and (not isinstance(session, str) or not session):
        raise _bad(f"'session' must be a session id (string) or null, got {json_type(session)}")
    return CallRequest(
        method,
        _args(payload),
        _kwargs(payload),
        _seconds(payload.get("timeout"), "timeout"),
        session,
    )


def parse_session_request(body: Union[bytes, bytearray], max_items: int) -> SessionRequest:
    """Decode and check a ``POST /sessions`` body (an empty body means no arguments)."""
    payload = _object(decode_json(body, max_items) if body.strip() else {}, _SESSION_FIELDS)
    return SessionRequest(
        _args(payload),
        _kwargs(payload),
        _seconds(payload.get("timeout"), "timeout"),
        _seconds(payload.get("idle_timeout"), "idle_timeout"),
    )


def _object(payload: Any, fields: tuple) -> Dict[str, Any]:
    if not isinstance(payload, dict):
        raise _bad(f"Request body must be a JSON object, got {json_type(payload)}")
    unknown = sorted(set(payload) - set(fields))
    if unknown:
        raise _bad(f"Unknown field(s) {', '.join(unknown)}; expected: {', '.join(fields)}")
    return payload


def _args(payload: Dict[str, Any]) -> List[Any]:
    args = payload.get("args")
    if args is None:
        return []
    if not isinstance(args, list):
        raise _bad(f"'args' must be a list, got {json_type(args)}")
    return args


def _kwargs(payload: Dict[str, Any]) -> Dict[str, Any]:
    kwargs = payload.get("kwargs")
    if kwargs is None:
        return {}
    if not isinstance(kwargs, dict):
        raise _bad(f"'kwargs' must be an object, got {json_type(kwargs)}")
    return kwargs


def _seconds(raw: Any, name: str) -> Optional[float]:
    """``None`` or a positive, finite number of seconds."""
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise _bad(f"'{name}' must be a number of seconds or null, got {json_type(raw)}")
    if not math.isfinite(raw) or raw <= 0:
        raise _bad(f"'{name}' must be a positive number of seconds, got {raw}")
    return float(raw)


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _bounded_int(text: str) -> int:
    if len(text) > _MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text)} digits exceeds {_MAX_INT_DIGITS}")
    return int(text)


_NEEDS_INT_GUARD = not hasattr(sys, "get_int_max_str_digits")


def _bad(message: str) -> CallError:
    """A ``bad_request`` error with ``message``."""
    return CallError(BAD_REQUEST, message)
