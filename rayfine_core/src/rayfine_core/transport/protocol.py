"""The call protocol between the client and the injected server, without I/O.

How a call is encoded, how an answer is decoded, and how each error kind
the server reports becomes a typed exception.  The server's side is
``rayfine_server``; both follow its README's protocol (version 2).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

from .. import errors

DEFAULT_MAX_REQUEST = 64 * 1024 * 1024
"""The server's default body cap; a larger request is refused before it is sent."""

_REMOTE_KINDS: dict[str, type[errors.RemoteError]] = {
    "remote_exception": errors.RemoteException,
    "actor_init_failed": errors.ActorInitError,
    "method_not_found": errors.MethodNotFoundError,
    "invalid_arguments": errors.InvalidArgumentsError,
    "not_serializable": errors.ResultNotSerializableError,
}
_SESSION_KINDS: dict[str, type[errors.SessionError]] = {
    "session_capacity": errors.SessionCapacityError,
    "unknown_session": errors.UnknownSessionError,
    "session_closed": errors.SessionClosedError,
}


@dataclass(frozen=True)
class Param:
    """One parameter of a remote method."""

    name: str
    kind: str
    required: bool
    default: Any = None
    annotation: Optional[str] = None


@dataclass(frozen=True)
class MethodInfo:
    """A method an environment exposes, as ``list_methods()`` reports it."""

    name: str
    signature: str = "(...)"
    doc: Optional[str] = None
    is_async: bool = False
    kind: str = "actor"
    params: tuple[Param, ...] = ()
    path: Optional[str] = None
    """HTTP-based environments: the route this method calls."""
    verb: str = "POST"
    """HTTP-based environments: the route's HTTP method."""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MethodInfo:
        params = tuple(
            Param(
                p["name"],
                p.get("kind", "POSITIONAL_OR_KEYWORD"),
                bool(p.get("required")),
                p.get("default"),
                p.get("annotation"),
            )
            for p in data.get("params") or ()
        )
        return cls(
            name=data["name"],
            signature=data.get("signature") or "(...)",
            doc=data.get("doc"),
            is_async=bool(data.get("is_async")),
            kind=data.get("kind", "actor"),
            params=params,
            path=data.get("path"),
        )


def max_request_bytes() -> int:
    """``RAYFINE_MAX_REQUEST_BYTES``: the largest call this client sends (default 64 MiB)."""
    raw = os.environ.get("RAYFINE_MAX_REQUEST_BYTES", "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else DEFAULT_MAX_REQUEST


def encode_json(payload: Mapping[str, Any], method: str) -> bytes:
    """Encode a request body; refuse non-JSON arguments and bodies over the size cap."""
    try:
        body = json.dumps(payload, separators=(",", ":"), allow_nan=True).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise errors.InvalidArgumentsError(
            "TypeError", f"arguments must be JSON-serialisable: {exc}", method=method
        ) from None
    limit = max_request_bytes()
    if len(body) > limit:
        raise errors.RequestTooLargeError(
            f"The arguments of {method}() encode to {len(body)} bytes, over the limit of {limit}"
            " bytes. Pass less (e.g. a path or an id the environment can read), or raise"
            " RAYFINE_MAX_REQUEST_BYTES here and RAYFINE_MAX_BODY_BYTES in the container."
        )
    return body


def encode_call(
    method: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    timeout: Optional[float],
    session: Optional[str] = None,
) -> bytes:
    """Encode a ``/call`` body."""
    body: dict[str, Any] = {"method": method, "args": list(args), "kwargs": dict(kwargs)}
    if timeout is not None:
        body["timeout"] = timeout
    if session is not None:
        body["session"] = session
    return encode_json(body, method)


def decode_json(content: bytes) -> Any:
    """A body as JSON: raises ValueError if it is not JSON, ResultNotSerializableError if too deep."""
    try:
        return json.loads(content)
    except RecursionError:
        raise errors.ResultNotSerializableError(
            "RecursionError", "the answer is nested too deeply to decode"
        ) from None


def decode_result(status: int, content: bytes, method: str) -> Any:
    """Return the result of a ``/call`` response, or raise the matching typed error."""
    try:
        payload = decode_json(content) if content else {}
    except ValueError:
        payload = None
    if status == 200 and isinstance(payload, dict) and "result" in payload:
        return payload["result"]
    raise error_from_response(status, payload, content, method)


def error_of(payload: Any) -> Optional[Mapping[str, Any]]:
    """The ``error`` object of an answer in the common error shape, or None."""
    error = payload.get("error") if isinstance(payload, dict) else None
    return error if isinstance(error, dict) else None


def error_from_response(
    status: int, payload: Any, content: bytes, method: str
) -> errors.RayfineError:
    """Map a non-success answer to the exception the caller should see."""
    error = error_of(payload)
    if error is None:
        snippet = content[:300].decode(errors="replace")
        return errors.TransportError(
            f"Unexpected response from the environment (HTTP {status}) to {method}(): {snippet}"
        )
    kind = str(error.get("kind", ""))
    message = str(error.get("message", ""))
    if kind == "timeout":
        return errors.CallTimeout(f"{method}() timed out in the environment: {message}")
    if kind == "unauthorized":
        return errors.TransportError(
            f"The environment rejected this client's token (HTTP {status}): {message}"
        )
    if kind == "too_large":
        return errors.RequestTooLargeError(f"The environment refused {method}(): {message}")
    if kind == "overloaded":
        return errors.ServerOverloadedError(
            f"The environment cannot take {method}() now: {message}"
        )
    if kind in _SESSION_KINDS:
        return _SESSION_KINDS[kind](message)
    cls = _REMOTE_KINDS.get(kind, errors.RemoteError)
    return cls(
        str(error.get("type") or kind or "Error"), message, error.get("traceback"), method=method
    )
