"""The JSON the remote runtime and the gateway exchange: requests, states, records, errors.

Both sides import this module, so a field is added in one place.  Decoding
checks types: the gateway reads it from clients it does not trust.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Optional

from rayfine_core import errors
from rayfine_core.runtime.types import ContainerRecord, ContainerState, Limits, StartRequest

from .errors import KINDS, kind_of

API = "/v1"
PROXY = "proxy"
"""``/v1/envs/<id>/proxy/...`` is forwarded to the environment's server."""


# -- start requests -------------------------------------------------------------------------


def encode_start(request: StartRequest) -> bytes:
    """A start request as the gateway takes it (no host port or run dir: the gateway picks them).

    :raises ValidationError: ``options`` holds something JSON cannot carry.
    """
    body = {
        "image": request.image,
        "name": request.name,
        "env": request.env,
        "labels": request.labels,
        "container_port": request.container_port,
        "network": request.network,
        "limits": {
            "mem_limit": request.limits.mem_limit,
            "cpu_limit": request.limits.cpu_limit,
            "pids_limit": request.limits.pids_limit,
        },
        "cap_add": list(request.cap_add),
        "command": request.command,
        "token": request.token,
        "user": request.user,
        "isolation": request.isolation,
        "options": request.options,
    }
    try:
        return json.dumps(body, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise errors.ValidationError(
            f"runtime_options must be JSON (strings, numbers, lists, objects) in remote mode: {exc}"
        ) from None


def decode_start(data: Any) -> StartRequest:
    """The :class:`StartRequest` a client sent, every field type-checked.

    :raises ValidationError: a field is missing or of the wrong type (never quoting env values).
    """
    if not isinstance(data, dict):
        raise errors.ValidationError("the start request must be a JSON object")
    limits = data.get("limits") or {}
    if not isinstance(limits, dict):
        raise errors.ValidationError("limits must be an object")
    env = _str_map(data.get("env"), "env", quote_values=False)
    command = data.get("command")
    if command is not None and not _is_str_list(command):
        raise errors.ValidationError("command must be a list of strings or null")
    cap_add = data.get("cap_add") or []
    if not _is_str_list(cap_add):
        raise errors.ValidationError("cap_add must be a list of strings")
    options = data.get("options") or {}
    if not isinstance(options, dict):
        raise errors.ValidationError("options must be an object")
    return StartRequest(
        image=_str(data, "image"),
        name=_str(data, "name"),
        env=env,
        labels=_str_map(data.get("labels"), "labels", quote_values=True),
        container_port=_int(data.get("container_port", 8000), "container_port", 1, 65535),
        network=_opt_str(data, "network"),
        limits=Limits(
            mem_limit=_opt_str(limits, "mem_limit"),
            cpu_limit=_opt_number(limits.get("cpu_limit"), "cpu_limit"),
            pids_limit=_opt_int(limits.get("pids_limit"), "pids_limit"),
        ),
        cap_add=tuple(cap_add),
        command=command,
        token=_opt_str(data, "token"),
        user=_opt_str(data, "user"),
        isolation=_str(data, "isolation"),
        options=options,
    )


def _str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise errors.ValidationError(f"{key} must be a non-empty string")
    return value


def _opt_str(data: Mapping[str, Any], key: str) -> Optional[str]:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise errors.ValidationError(f"{key} must be a string or null")
    return value


def _int(value: Any, key: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise errors.ValidationError(f"{key} must be an integer in {low}..{high}")
    return value


def _opt_int(value: Any, key: str) -> Optional[int]:
    return None if value is None else _int(value, key, 1, 1 << 31)


def _opt_number(value: Any, key: str) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise errors.ValidationError(f"{key} must be a positive number or null")
    return float(value)


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _str_map(value: Any, what: str, quote_values: bool) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise errors.ValidationError(f"{what} must be an object of strings")
    for key, item in value.items():
        if not isinstance(item, str):
            shown = f" ({item!r})" if quote_values else " (value not shown)"
            raise errors.ValidationError(f"{what}[{key!r}] must be a string{shown}")
    return dict(value)


# -- states and records ---------------------------------------------------------------------


def encode_state(state: ContainerState) -> dict[str, Any]:
    return {
        "running": state.running,
        "exit_code": state.exit_code,
        "oom_killed": state.oom_killed,
        "status": state.status,
    }


def decode_state(data: Mapping[str, Any]) -> ContainerState:
    return ContainerState(
        running=bool(data.get("running")),
        exit_code=data.get("exit_code"),
        oom_killed=bool(data.get("oom_killed")),
        status=str(data.get("status") or ""),
    )


def encode_record(record: ContainerRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "image": record.image,
        "status": record.status,
        "labels": dict(record.labels),
        "created": record.created,
    }


def decode_record(data: Mapping[str, Any], runtime: str) -> ContainerRecord:
    return ContainerRecord(
        id=str(data["id"]),
        name=str(data["name"]),
        image=str(data["image"]),
        status=str(data["status"]),
        labels=dict(data.get("labels") or {}),
        runtime=runtime,
        created=data.get("created"),
    )


# -- errors ---------------------------------------------------------------------------------


def error_body(kind: str, message: str, **extra: Any) -> dict[str, Any]:
    """The common error shape (the same the environment's server uses)."""
    return {"error": {"kind": kind, "type": kind, "message": message, **extra}}


def error_of_exception(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """How the gateway reports an exception of its runtime: (status, body)."""
    kind = kind_of(exc)
    extra: dict[str, Any] = {"type": type(exc).__name__}
    if isinstance(exc, errors.StartError):
        extra.update(logs=exc.logs, exit_code=exc.exit_code)
        message = str(exc).split("\n--- container log", 1)[0]
    elif isinstance(exc, errors.ImageBuildError):
        extra.update(logs=exc.log_tail)
        message = str(exc).split("\n--- last build output", 1)[0]
    else:
        message = str(exc)
    body = error_body(kind, message)
    body["error"].update(extra)
    return KINDS[kind][0], body


def exception_of(status: int, payload: Any, what: str) -> errors.RayfineError:
    """The typed exception a gateway answer stands for (client side)."""
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return errors.EngineUnavailableError(
            f"{what}: the gateway answered HTTP {status} without an error body; is that URL a"
            " Rayfine gateway (`rayfine serve`)?"
        )
    kind = str(error.get("kind") or "internal_error")
    message = str(error.get("message") or kind)
    cls = KINDS.get(kind, (500, errors.RuntimeFailure))[1]
    if issubclass(cls, errors.StartError):
        code = error.get("exit_code")
        return cls(message, str(error.get("logs") or ""), code if isinstance(code, int) else None)
    if issubclass(cls, errors.ImageBuildError):
        return cls(message, str(error.get("logs") or ""))
    return cls(message)


__all__ = [
    "API",
    "PROXY",
    "decode_record",
    "decode_start",
    "decode_state",
    "encode_record",
    "encode_start",
    "encode_state",
    "error_body",
    "error_of_exception",
    "exception_of",
]
