"""HTTP/1.1 framing for the clients, without I/O.

The clients talk to one server each, over a private Unix socket or a
127.0.0.1 port, so they need only a small part of HTTP: keep-alive
connections, requests sent in one write, responses framed by
Content-Length, chunked encoding or connection close.  Doing just that here
(instead of through a general-purpose client) keeps a call to a few
microseconds of client work and one write; see ``bench/run.py``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional

MAX_HEAD_BYTES = 64 * 1024


class ProtocolError(Exception):
    """The server's answer is not HTTP/1.1 as this client reads it, or was cut short."""


@dataclass
class Response:
    """A complete response; header names are lower-case."""

    status_code: int
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes = b""

    def json(self) -> Any:
        """The body decoded as JSON (raises ValueError if it is not)."""
        return json.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


def encode_request(verb: str, path: str, fixed_headers: bytes, body: Optional[bytes]) -> bytes:
    """One request as bytes, to be sent in one write.

    :param fixed_headers: ``name: value\\r\\n`` lines sent with every request
        (host, authorization), encoded once per client.
    """
    if body is None:
        return f"{verb} {path} HTTP/1.1\r\n".encode() + fixed_headers + b"\r\n"
    head = f"{verb} {path} HTTP/1.1\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
    return head.encode() + fixed_headers + b"\r\n" + body


def fixed_headers(host: str, token: Optional[str]) -> bytes:
    lines = [f"host: {host}"] + ([f"authorization: Bearer {token}"] if token else [])
    return "".join(line + "\r\n" for line in lines).encode("latin-1")


class ResponseParser:
    """Reads one response from the bytes fed to it.

    ``feed`` returns True once the response is complete (then see
    :attr:`response` and :attr:`keep_alive`); ``feed_eof`` is called when the
    server closes the connection.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._response: Optional[Response] = None
        self._length: Optional[int] = None  # None: chunked or until close
        self._chunked = False
        self._body = bytearray()
        self.keep_alive = True
        self.complete = False

    @property
    def response(self) -> Response:
        assert self.complete and self._response is not None
        return self._response

    def feed(self, data: bytes) -> bool:
        self._buffer += data
        if self._response is None and not self._read_head():
            return False
        return self._read_body()

    def feed_eof(self) -> bool:
        """The server closed the connection: the end of an unframed body, else an error."""
        self.keep_alive = False
        if self.complete:
            return True
        if self._response is not None and self._length is None and not self._chunked:
            return self._finish(bytes(self._buffer))
        raise ProtocolError("the server closed the connection before the response was complete")

    def _read_head(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEAD_BYTES:
                raise ProtocolError("response headers are too large")
            return False
        lines = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
        del self._buffer[: end + 4]
        version, _, rest = lines[0].partition(" ")
        status = rest[:3]
        if not version.startswith("HTTP/1.") or not status.isdigit():
            raise ProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        self._response = Response(int(status), headers)
        self._frame(version, headers)
        return True

    def _frame(self, version: str, headers: dict[str, str]) -> None:
        connection = headers.get("connection", "").lower()
        self.keep_alive = "close" not in connection and (
            version == "HTTP/1.1" or "keep-alive" in connection
        )
        assert self._response is not None
        if self._response.status_code in (204, 304) or self._response.status_code < 200:
            self._length = 0
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self._chunked = True
        elif "content-length" in headers:
            try:
                self._length = int(headers["content-length"])
            except ValueError:
                raise ProtocolError(f"bad content-length {headers['content-length']!r}") from None
        else:
            self.keep_alive = False  # the body ends when the server closes the connection

    def _read_body(self) -> bool:
        if self._chunked:
            return self._read_chunks()
        if self._length is None or len(self._buffer) < self._length:
            return False
        if len(self._buffer) > self._length:
            self.keep_alive = False  # bytes nobody asked for: do not reuse this connection
        return self._finish(bytes(self._buffer[: self._length]))

    def _read_chunks(self) -> bool:
        while True:
            line_end = self._buffer.find(b"\r\n")
            if line_end < 0:
                return False
            size_text = bytes(self._buffer[:line_end]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size {size_text[:20]!r}") from None
            if size == 0:
                trailer_end = self._buffer.find(b"\r\n\r\n", line_end)
                if self._buffer[line_end : line_end + 4] == b"\r\n\r\n" or trailer_end >= 0:
                    return self._finish(bytes(self._body))
                return False
            chunk_end = line_end + 2 + size
            if len(self._buffer) < chunk_end + 2:
                return False
            self._body += self._buffer[line_end + 2 : chunk_end]
            del self._buffer[: chunk_end + 2]

    def _finish(self, body: bytes) -> bool:
        assert self._response is not None
        self._response.content = body
        self.complete = True
        return True
