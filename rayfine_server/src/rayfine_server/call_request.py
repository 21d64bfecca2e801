"""Read and validate the body of ``POST /call``.

Parsed by hand rather than through a pydantic model: it is the hot path,
the shape is tiny, and each refusal can say exactly what is wrong.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from starlette.requests import Request

from .errors import BAD_REQUEST, CallError

_FIELDS = ("method", "args", "kwargs", "timeout")


@dataclass(frozen=True)
class CallRequest:
    """One method call as the client asked for it.

    :param method: name of the method to call.
    :param args: positional arguments.
    :param kwargs: keyword arguments.
    :param timeout: seconds the call may take; ``None`` for no limit.
    """

    method: str
    args: List[Any] = field(default_factory=list)
    kwargs: Dict[str, Any] = field(default_factory=dict)
    timeout: Optional[float] = None


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing it as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _bad(f"Request body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:  # chunked uploads declare no length up front
            raise _bad(f"Request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_call_request(body: bytes) -> CallRequest:
    """Decode and check a ``POST /call`` body.

    :raises CallError: ``bad_request`` naming the first problem found.
    """
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise _bad(f"Request body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise _bad(f"Request body must be a JSON object, got {_json_type(payload)}")
    unknown = sorted(set(payload) - set(_FIELDS))
    if unknown:
        raise _bad(f"Unknown field(s) {', '.join(unknown)}; expected: {', '.join(_FIELDS)}")
    method = payload.get("method")
    if not isinstance(method, str) or not method:
        raise _bad(f"'method' must be a non-empty string, got {_json_type(method)}")
    args = payload.get("args", [])
    if args is None:
        args = []
    if not isinstance(args, list):
        raise _bad(f"'args' must be a list, got {_json_type(args)}")
    kwargs = payload.get("kwargs", {})
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, dict):
        raise _bad(f"'kwargs' must be an object, got {_json_type(kwargs)}")
    return CallRequest(method, args, kwargs, _parse_timeout(payload.get("timeout")))


def _parse_timeout(raw: Any) -> Optional[float]:
    """``None`` or a positive, finite number of seconds."""
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise _bad(f"'timeout' must be a number of seconds or null, got {_json_type(raw)}")
    if not math.isfinite(raw) or raw <= 0:
        raise _bad(f"'timeout' must be a positive number of seconds, got {raw}")
    return float(raw)


def _json_type(value: Any) -> str:
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


def _bad(message: str) -> CallError:
    """A ``bad_request`` error with ``message``."""
    return CallError(BAD_REQUEST, message)
