"""The wire protocol between the client and the injected server, without I/O.

Kept free of sockets so the sync and async clients share every decision:
how a call is encoded, and how each error kind becomes a typed exception.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

from . import errors

_ERROR_KINDS: dict[str, type[errors.RemoteError]] = {
    "remote_exception": errors.RemoteException,
    "actor_init_failed": errors.ActorInitError,
    "method_not_found": errors.MethodNotFoundError,
    "invalid_arguments": errors.InvalidArgumentsError,
    "not_serializable": errors.ResultNotSerializableError,
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
    """HTTP-based environments: the route this method posts to."""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "MethodInfo":
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


def encode_call(
    method: str, args: Sequence[Any], kwargs: Mapping[str, Any], timeout: Optional[float]
) -> bytes:
    """Encode a ``/call`` body; raise InvalidArgumentsError for non-JSON arguments."""
    body = {"method": method, "args": list(args), "kwargs": dict(kwargs), "timeout": timeout}
    try:
        return json.dumps(body, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise errors.InvalidArgumentsError(
            "TypeError", f"arguments must be JSON-serialisable: {exc}", method=method
        ) from None


def decode_result(status: int, content: bytes, method: str) -> Any:
    """Return the result of a ``/call`` response, or raise the matching typed error."""
    try:
        payload = json.loads(content) if content else {}
    except ValueError:
        payload = None
    if status == 200 and isinstance(payload, dict) and "result" in payload:
        return payload["result"]
    raise error_from_response(status, payload, content, method)


def error_from_response(
    status: int, payload: Any, content: bytes, method: str
) -> errors.RayfineError:
    """Map a non-success response to the exception the caller should see."""
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
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
    cls = _ERROR_KINDS.get(kind, errors.RemoteError)
    return cls(
        str(error.get("type") or kind or "Error"), message, error.get("traceback"), method=method
    )
