"""Small ASGI helpers: read a body within a cap, answer JSON or bytes, stream, drop a connection."""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable, MutableMapping, Optional

from ..errors import KINDS
from ..messages import error_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON = [(b"content-type", b"application/json")]


class BodyTooLarge(Exception):
    """The request body is over the cap (the rest is not read)."""


class ClientGone(Exception):
    """The client closed the connection before its request body was complete."""


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body.

    :raises BodyTooLarge: it is longer than ``limit`` bytes.
    :raises ClientGone: the client disconnected first.
    """
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGone
    body = message.get("body", b"")
    if not message.get("more_body"):
        if len(body) > limit:
            raise BodyTooLarge
        return bytes(body)
    parts = [body]
    size = len(body)
    while message.get("more_body"):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        parts.append(chunk)
    return b"".join(parts)


async def send_bytes(
    send: Send, status: int, body: bytes, content_type: Optional[bytes] = b"application/json"
) -> None:
    headers = [(b"content-length", str(len(body)).encode())]
    if content_type:
        headers.append((b"content-type", content_type))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, status: int, payload: Any) -> None:
    await send_bytes(send, status, json.dumps(payload, separators=(",", ":")).encode())


async def send_error(send: Send, kind: str, message: str, status: Optional[int] = None) -> None:
    """An answer in the common error shape; the status is the kind's unless given."""
    await send_json(send, status or KINDS.get(kind, (500,))[0], error_body(kind, message))


async def start_stream(send: Send, content_type: bytes) -> None:
    """Begin a response whose body follows in pieces (sent chunked)."""
    headers = [(b"content-type", content_type), (b"cache-control", b"no-store")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})


async def send_piece(send: Send, piece: bytes) -> None:
    await send({"type": "http.response.body", "body": piece, "more_body": True})


async def end_stream(send: Send) -> None:
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def abort(send: Send) -> None:
    """Drop the connection without an answer, as the environment's own server would if it died.

    The client then sees a broken exchange (as in local mode) and asks the
    gateway what became of the container.  ASGI has no "abort": a response
    that starts and never completes makes the server close the connection.
    """
    headers = [(b"content-type", b"application/json"), (b"content-length", b"1")]
    await send({"type": "http.response.start", "status": 502, "headers": headers})


async def hangup(receive: Receive) -> None:
    """Return once the client has disconnected (call it after the request body was read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def header(scope: Scope, name: bytes) -> Optional[bytes]:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return None
