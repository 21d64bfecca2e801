"""What a route answers, and how that becomes HTTP/1.1 bytes written in one go."""

from __future__ import annotations

from http import HTTPStatus
from typing import AsyncIterator, Awaitable, Callable, Dict, Optional, Protocol, Tuple

_JSON = b"content-type: application/json\r\n"
_STATUS_LINES: Dict[int, bytes] = {}


def status_line(status: int) -> bytes:
    """``HTTP/1.1 200 OK\\r\\n`` for ``status`` (cached)."""
    line = _STATUS_LINES.get(status)
    if line is None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Unknown"
        line = _STATUS_LINES[status] = f"HTTP/1.1 {status} {reason}\r\n".encode("ascii")
    return line


class Response:
    """A complete JSON response.

    :param status: HTTP status code.
    :param body: the encoded JSON body.
    :param headers: extra header lines, each ``(name, value)``.
    :param close: close the connection after sending it.
    """

    __slots__ = ("body", "close", "headers", "status")

    def __init__(
        self,
        status: int,
        body: bytes,
        headers: Tuple[Tuple[str, str], ...] = (),
        close: bool = False,
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers
        self.close = close

    def encode_head(self, keep_alive: bool) -> bytes:
        """Status line and headers, ending with the blank line."""
        extra = b"".join(f"{k}: {v}\r\n".encode("latin-1") for k, v in self.headers)
        connection = b"" if keep_alive else b"connection: close\r\n"
        length = b"content-length: %d\r\n\r\n" % len(self.body)
        return status_line(self.status) + _JSON + extra + connection + length


class Tunnel(Protocol):
    """Both directions of a connection after ``101 Switching Protocols`` (proxy mode)."""

    def send(self, data: bytes) -> None:
        """Pass bytes from the client on."""

    async def pump(self, write: Callable[[bytes], Awaitable[None]]) -> None:
        """Pass bytes to the client with ``write`` until the other side closes."""

    def close(self) -> None:
        """The client went away: close the other side."""


class StreamResponse:
    """A response whose body arrives piece by piece (proxy mode).

    :param head: the status line and header lines, without the final blank
        line (the connection adds ``connection: close`` if needed, then it).
    :param body: the body's pieces, already framed as the head says.
    :param close: close the connection after the body.
    :param tunnel: after a ``101`` answer, the connection becomes this tunnel.
    """

    __slots__ = ("body", "close", "head", "tunnel")

    def __init__(
        self,
        head: bytes,
        body: Optional[AsyncIterator[bytes]],
        close: bool = False,
        tunnel: Optional[Tunnel] = None,
    ) -> None:
        self.head = head
        self.body = body
        self.close = close
        self.tunnel = tunnel


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
