"""HTTP clients for one environment: a blocking one and an asyncio one.

Each keeps one pooled connection set to its container (a Unix socket or a
127.0.0.1 port).  The wire format and the error mapping live in
:mod:`rayfine_core.protocol`; this module only moves bytes and turns
httpx's exceptions into Rayfine's.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import httpx

from . import errors
from .protocol import decode_result, encode_call
from .types import Endpoint

_JSON = {"content-type": "application/json"}
TIMEOUT_GRACE = 2.0
"""Extra seconds the client waits past a call's timeout for the server to report it."""


def _limits() -> httpx.Limits:
    return httpx.Limits(max_connections=512, max_keepalive_connections=128, keepalive_expiry=60)


def _headers(token: Optional[str]) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"} if token else {}


def _read_timeout(timeout: Optional[float]) -> httpx.Timeout:
    return httpx.Timeout(None if timeout is None else timeout + TIMEOUT_GRACE, connect=10.0)


def _transport_error(exc: httpx.HTTPError, what: str, endpoint: Endpoint) -> errors.RayfineError:
    if isinstance(exc, httpx.TimeoutException):
        return errors.CallTimeout(f"{what} got no answer in time from {endpoint}")
    return errors.TransportError(f"{what} failed talking to {endpoint}: {type(exc).__name__}: {exc}")


class Client:
    """Blocking client; safe to share between threads."""

    def __init__(self, endpoint: Endpoint, token: Optional[str] = None) -> None:
        self.endpoint = endpoint
        transport = httpx.HTTPTransport(uds=endpoint.unix_socket, limits=_limits())
        self._http = httpx.Client(base_url=endpoint.base_url, transport=transport, headers=_headers(token))

    def get(self, path: str, timeout: float = 10.0) -> httpx.Response:
        try:
            return self._http.get(path, timeout=timeout)
        except httpx.HTTPError as exc:
            raise _transport_error(exc, f"GET {path}", self.endpoint) from exc

    def post(self, path: str, body: bytes, timeout: Optional[float]) -> httpx.Response:
        try:
            return self._http.post(path, content=body, headers=_JSON, timeout=_read_timeout(timeout))
        except httpx.HTTPError as exc:
            raise _transport_error(exc, f"POST {path}", self.endpoint) from exc

    def call(self, method: str, args: Sequence[Any], kwargs: Mapping[str, Any], timeout: Optional[float]) -> Any:
        response = self.post("/call", encode_call(method, args, kwargs, timeout), timeout)
        return decode_result(response.status_code, response.content, method)

    def close(self) -> None:
        self._http.close()


class AsyncClient:
    """Asyncio client; create it on the event loop that will use it."""

    def __init__(self, endpoint: Endpoint, token: Optional[str] = None) -> None:
        self.endpoint = endpoint
        transport = httpx.AsyncHTTPTransport(uds=endpoint.unix_socket, limits=_limits())
        self._http = httpx.AsyncClient(base_url=endpoint.base_url, transport=transport, headers=_headers(token))

    async def get(self, path: str, timeout: float = 10.0) -> httpx.Response:
        try:
            return await self._http.get(path, timeout=timeout)
        except httpx.HTTPError as exc:
            raise _transport_error(exc, f"GET {path}", self.endpoint) from exc

    async def post(self, path: str, body: bytes, timeout: Optional[float]) -> httpx.Response:
        try:
            return await self._http.post(path, content=body, headers=_JSON, timeout=_read_timeout(timeout))
        except httpx.HTTPError as exc:
            raise _transport_error(exc, f"POST {path}", self.endpoint) from exc

    async def call(self, method: str, args: Sequence[Any], kwargs: Mapping[str, Any], timeout: Optional[float]) -> Any:
        response = await self.post("/call", encode_call(method, args, kwargs, timeout), timeout)
        return decode_result(response.status_code, response.content, method)

    async def aclose(self) -> None:
        await self._http.aclose()
