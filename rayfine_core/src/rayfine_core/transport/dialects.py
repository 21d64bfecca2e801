"""How a method call maps onto HTTP, for each environment type.

* function-based: ``POST /call {"method", "args", "kwargs", "timeout"}`` to the
  injected server, methods listed by ``GET /methods``.
* http-based: ``env.evaluate(**body)`` posts ``body`` to ``/evaluate`` of the
  user's own FastAPI app; methods are the app's routes from ``/openapi.json``,
  every verb (``GET`` with query parameters, path parameters as keywords).
"""

from __future__ import annotations

import difflib
import json
import re
import urllib.parse
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
    """A FastAPI app: each route is a method, listed in ``/openapi.json``.

    ``POST /evaluate`` is ``env.evaluate(**body)``; ``GET /health`` is
    ``env.health()``; ``GET /items/{item_id}`` is ``env.items_by_item_id(item_id=3)``
    (path parameters are keyword arguments, as are query parameters).  When
    one path has several verbs, POST (else GET) keeps the plain name and the
    others are ``get_items``, ``delete_items``, ...
    """

    methods_path = "/openapi.json"
    health_paths: tuple[str, ...] = ("/health", "/openapi.json")

    def __init__(self) -> None:
        self._routes: dict[str, _Route] = {}

    def parse_methods(self, data: Any) -> dict[str, MethodInfo]:
        """Every route of the OpenAPI document, as a method (see the class docstring)."""
        routes: list[_Route] = []
        for path, operations in (data.get("paths") or {}).items():
            base = route_method_name(path)
            if not base or not isinstance(operations, dict):
                continue
            verbs = [v for v in _VERBS if isinstance(operations.get(v), dict)]
            plain = next((v for v in ("post", "get") if v in verbs), verbs[0] if verbs else "")
            for verb in verbs:
                name = base if verb == plain else f"{verb}_{base}"
                routes.append(_route(name, verb.upper(), path, operations[verb], data))
        self._routes = {route.name: route for route in routes}
        return {route.name: route.info for route in routes}

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
                "HTTP-based environments take keyword arguments only (path and query"
                " parameters, and the fields of the JSON body)",
                method=method,
            )
        if session is not None:
            raise errors.ValidationError("HTTP-based environments have no sessions.")
        route = self._routes.get(method) if info is not None else None
        if route is None:  # not in the OpenAPI document: POST the keywords to /<method>
            return Request("POST", f"/{method}", encode_json(dict(kwargs), method))
        return route.request(kwargs, method)

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
        route = self._routes.get(method)
        where = f"{route.verb} {route.path}" if route else f"POST /{method}"
        if status == 404 and detail == "Not Found" and route is None:
            raise errors.MethodNotFoundError(
                "HTTP 404",
                f"the app has no route for {method}() ({where}){self._known(method)}",
                method=method,
            )
        if status == 405:
            raise errors.MethodNotFoundError(
                "HTTP 405",
                f"the app answers {where} with 405 Method Not Allowed: the route exists for"
                " another HTTP method, which its OpenAPI document does not list"
                + self._known(method),
                method=method,
            )
        if status == 422:
            raise errors.InvalidArgumentsError(
                "HTTP 422",
                f"the app refused the arguments of {method}(): {validation_text(detail)}"
                + (f"; expected {method}{route.info.signature}" if route else ""),
                method=method,
            )
        raise errors.RemoteHTTPError(status, detail, method=method)

    def _known(self, method: str) -> str:
        names = sorted(self._routes)
        if not names:
            return ""
        close = difflib.get_close_matches(method, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        listed = ", ".join(f"{n} ({self._routes[n].verb} {self._routes[n].path})" for n in names)
        return f"{hint} Routes: {listed}"


_VERBS = ("post", "get", "put", "patch", "delete")
_Where = str  # "path", "query" or "body"


@dataclass(frozen=True)
class _Route:
    """One route and where each keyword argument goes in its request."""

    name: str
    verb: str
    path: str
    info: MethodInfo
    where: tuple[tuple[str, _Where], ...]
    body: str  # "fields": kwargs (not path/query) are the JSON object; "value": kwarg `body`; ""

    def request(self, kwargs: Mapping[str, Any], method: str) -> Request:
        where = dict(self.where)
        path = self.path
        query: list[tuple[str, str]] = []
        fields: dict[str, Any] = {}
        for key, value in kwargs.items():
            place = where.get(key, "body")
            if place == "path":
                path = path.replace("{" + key + "}", urllib.parse.quote(_text(value), safe=""))
            elif place == "query":
                values = value if isinstance(value, (list, tuple)) else [value]
                query += [(key, _text(v)) for v in values if v is not None]
            else:
                fields[key] = value
        if query:
            path += "?" + urllib.parse.urlencode(query)
        if self.body == "value":
            # The whole body is one value (a list, a string): encode_json takes any JSON value.
            body: Any = fields.get("body")
            return Request(self.verb, path, encode_json(body, method))
        if self.body == "fields" or fields:
            return Request(self.verb, path, encode_json(fields, method))
        return Request(self.verb, path)


def _text(value: Any) -> str:
    """A path or query value as FastAPI parses it back (``true``, not ``True``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _route(name: str, verb: str, path: str, operation: Mapping[str, Any], document: Any) -> _Route:
    params: list[Param] = []
    where: list[tuple[str, str]] = []
    for raw in operation.get("parameters") or ():
        spec = _resolve(raw, document)
        place, pname = spec.get("in"), spec.get("name")
        if place not in ("path", "query") or not isinstance(pname, str) or not pname.isidentifier():
            continue  # headers and cookies are not arguments
        schema = _resolve(spec.get("schema") or {}, document)
        required = bool(spec.get("required")) or place == "path"
        params.append(
            Param(
                pname, "KEYWORD_ONLY", required, schema.get("default"), type_text(schema, document)
            )
        )
        where.append((pname, place))
    body, body_params = _body(operation, document, {p.name for p in params})
    params += body_params
    info = MethodInfo(
        name=name,
        signature=_signature_text(params),
        doc=operation.get("description") or operation.get("summary"),
        kind="route",
        params=tuple(params),
        path=path,
        verb=verb,
    )
    return _Route(name, verb, path, info, tuple(where), body)


def _body(operation: Mapping[str, Any], document: Any, taken: set[str]) -> tuple[str, list[Param]]:
    """How the JSON body is made, and the keyword parameters it takes.

    An object with properties: one keyword per property, and ``**extra`` only
    when the schema allows more (pydantic drops unknown fields by default, so
    a misspelt keyword would be silently ignored: it is refused here instead).
    An object without properties (``body: dict``): ``**body``.  Anything
    else (a list, a string): one keyword ``body``, sent as the whole body.
    """
    request_body = _resolve(operation.get("requestBody") or {}, document)
    content = (request_body.get("content") or {}).get("application/json")
    if not isinstance(content, Mapping):
        return "", []
    schema = _resolve(content.get("schema") or {}, document)
    properties = schema.get("properties")
    if schema.get("type") not in (None, "object") or "anyOf" in schema:
        required = bool(request_body.get("required"))
        return "value", [Param("body", "KEYWORD_ONLY", required, None, type_text(schema, document))]
    if not isinstance(properties, Mapping):
        return "fields", [Param("body", "VAR_KEYWORD", False)]
    required_names = set(schema.get("required") or ())
    params = [
        Param(
            name,
            "KEYWORD_ONLY",
            name in required_names,
            prop.get("default") if isinstance(prop, Mapping) else None,
            type_text(_resolve(prop, document), document),
        )
        for name, prop in properties.items()
        if isinstance(name, str) and name.isidentifier() and name not in taken
    ]
    extra = schema.get("additionalProperties", False)
    if extra is True or isinstance(extra, Mapping):
        params.append(Param("extra", "VAR_KEYWORD", False))
    return "fields", params


def validation_text(detail: Any) -> str:
    """FastAPI's 422 detail as one readable line: ``answer: Input should be a valid string``."""
    if not isinstance(detail, list):
        return json.dumps(detail) if not isinstance(detail, str) else detail
    parts = []
    for item in detail:
        if not isinstance(item, Mapping):
            parts.append(str(item))
            continue
        loc = [str(x) for x in item.get("loc") or () if x not in ("body", "query", "path")]
        text = f"{'.'.join(loc) or 'body'}: {item.get('msg', item)}"
        if "input" in item and item.get("type") != "missing":
            text += f" (got {json.dumps(item['input'], default=str)[:60]})"
        parts.append(text)
    return "; ".join(parts)


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
    """``/evaluate`` -> ``evaluate``, ``/env/reset-all`` -> ``env_reset_all``,
    ``/items/{item_id}`` -> ``items_by_item_id``; None when no identifier can be made."""
    parts = []
    for segment in path.strip("/").split("/"):
        if segment.startswith("{") and segment.endswith("}"):
            segment = "by_" + segment[1:-1].split(":", 1)[0]
        parts.append(re.sub(r"[-.]", "_", segment))
    name = "_".join(p for p in parts if p)
    return name if name.isidentifier() else None


def _resolve(schema: Any, document: Any) -> Mapping[str, Any]:
    ref = schema.get("$ref") if isinstance(schema, Mapping) else None
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return schema if isinstance(schema, Mapping) else {}
    node: Any = document
    for part in ref[2:].split("/"):
        node = node.get(part, {}) if isinstance(node, Mapping) else {}
    return node if isinstance(node, Mapping) else {}


_JSON_TYPES = {
    "string": "str",
    "integer": "int",
    "number": "float",
    "boolean": "bool",
    "null": "None",
    "object": "dict",
    "array": "list",
}


def type_text(schema: Any, document: Any, depth: int = 0) -> Optional[str]:
    """A JSON schema as a Python annotation: ``str | None``, ``list[int]``, ``Literal['a', 'b']``.

    A ``$ref`` shows as the model's name (``EvaluateRequest``); None when the
    schema says nothing about the type.
    """
    if not isinstance(schema, Mapping) or depth > 8:
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return ref.rsplit("/", 1)[-1] or None
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return f"Literal[{', '.join(repr(v) for v in schema['enum'])}]"
    if "const" in schema:
        return f"Literal[{schema['const']!r}]"
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            texts = [type_text(option, document, depth + 1) or "Any" for option in options]
            return " | ".join(dict.fromkeys(texts))
    all_of = schema.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1:
        return type_text(all_of[0], document, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(_JSON_TYPES.get(str(k), "Any") for k in kind)
    if kind == "array":
        items = type_text(schema.get("items"), document, depth + 1)
        return f"list[{items}]" if items else "list"
    if kind == "object":
        extra = schema.get("additionalProperties")
        value = type_text(extra, document, depth + 1) if isinstance(extra, Mapping) else None
        return f"dict[str, {value}]" if value else "dict"
    return _JSON_TYPES.get(str(kind)) if kind else None


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
