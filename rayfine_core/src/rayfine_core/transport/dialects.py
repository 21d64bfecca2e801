"""How a method call maps onto HTTP, for each environment type.

* function-based: ``POST /call {"method", "args", "kwargs", "timeout"}`` to the
  injected server, methods listed by ``GET /methods``.
* http-based: ``env.evaluate(**body)`` posts ``body`` to ``/evaluate`` of the
  user's own FastAPI app; methods are the app's routes from ``/openapi.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Protocol, Sequence

from .. import errors
from ..runtime.types import EnvType
from .protocol import (
    MethodInfo,
    Param,
    decode_json,
    decode_result,
    encode_call,
    encode_json,
    error_from_response,
    error_of,
)
from .wire import Response


@dataclass(frozen=True)
class Request:
    """One HTTP request a dialect asks for."""

    verb: str
    path: str
    body: Optional[bytes] = None


class Dialect(Protocol):
    """How one environment type speaks HTTP: methods, calls, answers, readiness."""

    methods_path: str
    health_paths: tuple[str, ...]

    def parse_methods(self, data: Any) -> dict[str, MethodInfo]: ...

    def request(
        self,
        info: Optional[MethodInfo],
        method: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        timeout: Optional[float],
        session: Optional[str],
    ) -> Request: ...

    def decode(self, status: int, content: bytes, method: str) -> Any: ...


class FunctionDialect:
    """The injected server: ``POST /call``, methods from ``GET /methods``."""

    methods_path = "/methods"
    health_paths: tuple[str, ...] = ("/health",)

    def parse_methods(self, data: Any) -> dict[str, MethodInfo]:
        return {m["name"]: MethodInfo.from_json(m) for m in data.get("methods", [])}

    def request(
        self,
        info: Optional[MethodInfo],
        method: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        timeout: Optional[float],
        session: Optional[str],
    ) -> Request:
        return Request("POST", "/call", encode_call(method, args, kwargs, timeout, session))

    def decode(self, status: int, content: bytes, method: str) -> Any:
        return decode_result(status, content, method)


class HttpDialect:
    """A FastAPI app: each route is a method, listed in ``/openapi.json``."""

    methods_path = "/openapi.json"
    health_paths: tuple[str, ...] = ("/health", "/openapi.json")

    def parse_methods(self, data: Any) -> dict[str, MethodInfo]:
        """Every POST route without path parameters becomes a method named after its path."""
        found: dict[str, MethodInfo] = {}
        for path, operations in (data.get("paths") or {}).items():
            post = operations.get("post") if isinstance(operations, dict) else None
            name = route_method_name(path)
            if post and name:
                params = _body_params(post, data)
                found[name] = MethodInfo(
                    name=name,
                    signature=_signature_text(params),
                    doc=post.get("description") or post.get("summary"),
                    kind="route",
                    params=params,
                    path=path,
                )
        return found

    def request(
        self,
        info: Optional[MethodInfo],
        method: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        timeout: Optional[float],
        session: Optional[str],
    ) -> Request:
        if args:
            raise errors.InvalidArgumentsError(
                "TypeError",
                "HTTP-based environments take keyword arguments only (they become the JSON body)",
                method=method,
            )
        if session is not None:
            raise errors.ValidationError("HTTP-based environments have no sessions.")
        path = info.path if info and info.path else f"/{method}"
        return Request("POST", path, encode_json(dict(kwargs), method))

    def decode(self, status: int, content: bytes, method: str) -> Any:
        try:
            payload = decode_json(content) if content else None
        except ValueError:
            payload = content.decode(errors="replace")
        if 200 <= status < 300:
            return payload
        if error_of(payload) is not None:  # Rayfine's own proxy in front of the app answered
            raise error_from_response(status, payload, content, method)
        detail = payload.get("detail", payload) if isinstance(payload, dict) else payload
        if status == 404 and detail == "Not Found":  # the framework's answer for an unknown route
            raise errors.MethodNotFoundError(
                "HTTP 404", f"the app has no route for {method}()", method=method
            )
        if status == 422:
            raise errors.InvalidArgumentsError("HTTP 422", json.dumps(detail), method=method)
        raise errors.RemoteHTTPError(status, detail, method=method)


def health_verdict(response: Response) -> Optional[bool]:
    """What one health answer means: True ready, None not yet (try the next path or again).

    :raises EnvLoadError: env.py (or the app) failed to load: no point waiting.
    :raises ActorInitError: eager construction of the Actor failed.
    :raises StartError: the server rejected the token.
    """
    if response.status_code == 200:
        return True
    error = _error_of_body(response)
    kind = error.get("kind")
    if kind == "env_load_failed":
        raise errors.EnvLoadError(
            f"env.py failed to load in the container: {error.get('type')}: {error.get('message')}",
            logs=str(error.get("traceback") or ""),
        )
    if kind == "actor_init_failed":
        raise errors.ActorInitError(
            str(error.get("type") or "Error"),
            str(error.get("message") or ""),
            error.get("traceback"),
            method="Actor.__init__",
        )
    if response.status_code == 401:
        raise errors.StartError("The environment's server rejected the client token.")
    return None


def _error_of_body(response: Response) -> Mapping[str, Any]:
    try:
        return error_of(decode_json(response.content)) or {}
    except (ValueError, errors.RayfineError):
        return {}


def dialect_for(env_type: EnvType) -> Dialect:
    """The dialect an environment of ``env_type`` speaks."""
    return FunctionDialect() if env_type is EnvType.FUNCTION_BASED else HttpDialect()


def route_method_name(path: str) -> Optional[str]:
    """``/evaluate`` -> ``evaluate``, ``/env/reset-all`` -> ``env_reset_all``; None for templated paths."""
    if "{" in path:
        return None
    name = path.strip("/").replace("/", "_").replace("-", "_").replace(".", "_")
    return name if name.isidentifier() else None


def _body_params(operation: Mapping[str, Any], document: Mapping[str, Any]) -> tuple[Param, ...]:
    """Keyword parameters from a JSON request body schema (one ``$ref`` level resolved)."""
    content = ((operation.get("requestBody") or {}).get("content") or {}).get(
        "application/json"
    ) or {}
    schema = _resolve(content.get("schema") or {}, document)
    if schema.get("type") not in (None, "object") or not isinstance(schema.get("properties"), dict):
        return (Param("body", "VAR_KEYWORD", False),) if content else ()
    required = set(schema.get("required") or ())
    params = [
        Param(
            name,
            "KEYWORD_ONLY",
            name in required,
            prop.get("default"),
            _type_name(_resolve(prop, document)),
        )
        for name, prop in schema["properties"].items()
        if name.isidentifier()
    ]
    if schema.get("additionalProperties", True) is not False:
        params.append(
            Param("extra", "VAR_KEYWORD", False)
        )  # the server decides about unknown fields
    return tuple(params)


def _resolve(schema: Mapping[str, Any], document: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref") if isinstance(schema, Mapping) else None
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return schema if isinstance(schema, Mapping) else {}
    node: Any = document
    for part in ref[2:].split("/"):
        node = node.get(part, {}) if isinstance(node, Mapping) else {}
    return node if isinstance(node, Mapping) else {}


def _type_name(schema: Mapping[str, Any]) -> Optional[str]:
    kind = schema.get("type") or schema.get("title")
    return str(kind) if kind else None


def _signature_text(params: Sequence[Param]) -> str:
    parts: list[str] = []
    for p in params:
        if p.kind == "VAR_KEYWORD":
            parts.append(f"**{p.name}")
            continue
        if not parts:
            parts.append("*")
        text = f"{p.name}: {p.annotation}" if p.annotation else p.name
        parts.append(text if p.required else f"{text} = {p.default!r}")
    return f"({', '.join(parts)})"
