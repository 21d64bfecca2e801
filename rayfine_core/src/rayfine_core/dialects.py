"""How a method call maps onto HTTP, for each environment type.

* function-based: ``POST /call {"method", "args", "kwargs", "timeout"}`` to the
  injected server, methods listed by ``GET /methods``.
* http-based: ``env.evaluate(**body)`` posts ``body`` to ``/evaluate`` of the
  user's own FastAPI app; methods are the app's routes from ``/openapi.json``.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Optional, Sequence

from . import errors
from .protocol import MethodInfo, Param, decode_result, encode_call
from .types import EnvType


class FunctionDialect:
    methods_path = "/methods"

    def parse_methods(self, data: Any) -> dict[str, MethodInfo]:
        return {m["name"]: MethodInfo.from_json(m) for m in data.get("methods", [])}

    def request(self, info: Optional[MethodInfo], method: str, args: Sequence[Any], kwargs: Mapping[str, Any], timeout: Optional[float]) -> tuple[str, bytes]:
        return "/call", encode_call(method, args, kwargs, timeout)

    def decode(self, status: int, content: bytes, method: str) -> Any:
        return decode_result(status, content, method)


class HttpDialect:
    methods_path = "/openapi.json"

    def parse_methods(self, data: Any) -> dict[str, MethodInfo]:
        found: dict[str, MethodInfo] = {}
        for path, operations in (data.get("paths") or {}).items():
            post = operations.get("post") if isinstance(operations, dict) else None
            if not post or "{" in path:
                continue
            name = path.strip("/").replace("/", "_").replace("-", "_")
            if name:
                found[name] = MethodInfo(
                    name=name, signature="(**body)", doc=post.get("description") or post.get("summary"),
                    kind="route", params=(Param("body", "VAR_KEYWORD", False),), path=path,
                )
        return found

    def request(self, info: Optional[MethodInfo], method: str, args: Sequence[Any], kwargs: Mapping[str, Any], timeout: Optional[float]) -> tuple[str, bytes]:
        if args:
            raise errors.InvalidArgumentsError(
                "TypeError", "HTTP-based environments take keyword arguments only (they become the JSON body)",
                method=method,
            )
        path = info.path if info and info.path else f"/{method}"
        try:
            return path, json.dumps(dict(kwargs)).encode()
        except (TypeError, ValueError) as exc:
            raise errors.InvalidArgumentsError("TypeError", f"arguments must be JSON-serialisable: {exc}", method=method) from None

    def decode(self, status: int, content: bytes, method: str) -> Any:
        try:
            payload = json.loads(content) if content else None
        except ValueError:
            payload = content.decode(errors="replace")
        if 200 <= status < 300:
            return payload
        detail = payload.get("detail", payload) if isinstance(payload, dict) else payload
        if status == 404:
            return_cls: type[errors.RemoteError] = errors.MethodNotFoundError
        elif status == 422:
            return_cls = errors.InvalidArgumentsError
        else:
            return_cls = errors.RemoteException
        raise return_cls(f"HTTP {status}", json.dumps(detail) if not isinstance(detail, str) else detail, method=method)


def dialect_for(env_type: EnvType) -> "FunctionDialect | HttpDialect":
    return FunctionDialect() if env_type is EnvType.FUNCTION_BASED else HttpDialect()
