"""Parse HTTP/1.1 requests strictly, without I/O: request heads and chunked bodies.

Strict on purpose: anything a request smuggler or a fuzzer could use to make
two parsers disagree (bare LF, folded or space-padded header names, signed or
repeated Content-Length, Content-Length next to Transfer-Encoding, codings
other than ``chunked``) is refused with an :class:`HttpError`.
"""

from __future__ import annotations

import re
from typing import Dict, List, Optional, Tuple

MAX_HEAD_BYTES = 32 * 1024
MAX_HEADERS = 100
MAX_CHUNK_LINE = 1024
MAX_TRAILER_BYTES = 8 * 1024

_REQUEST_LINE = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+) ([^\x00-\x20\x7f]+) HTTP/(1\.[01])")
_HEADER = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([^\x00-\x08\x0a-\x1f\x7f]*?)[ \t]*")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\x00-\x08\x0a-\x1f\x7f]*)?")
_ABSOLUTE = re.compile(r"https?://[^/?#]*")
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-5][0-9][0-9])(?: [^\x00-\x08\x0a-\x1f\x7f]*)?")


class HttpError(Exception):
    """A request this server refuses to read further.

    :param status: the HTTP status to answer (the connection is closed after it).
    :param message: what was wrong, for the error body.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class RequestHead:
    """The request line and headers of one request.

    :param headers: lower-case names; repeated headers joined with ``", "``.
    :param fields: every header line as sent (lower-case name, value), in order.
    :param content_length: the declared body length; ``None`` without one.
    """

    __slots__ = (
        "chunked",
        "content_length",
        "expect_continue",
        "fields",
        "headers",
        "keep_alive",
        "method",
        "path",
        "query",
        "target",
        "version",
    )

    def __init__(
        self,
        method: str,
        target: str,
        version: str,
        fields: List[Tuple[str, str]],
        headers: Dict[str, str],
    ) -> None:
        self.method = method
        self.target = target
        path, _, self.query = target.partition("?")
        self.path = path
        self.version = version
        self.fields = fields
        self.headers = headers
        connection = headers.get("connection", "").lower()
        if version == "1.1":
            self.keep_alive = "close" not in connection
        else:
            self.keep_alive = "keep-alive" in connection
        self.content_length: Optional[int] = None
        self.chunked = False
        self.expect_continue = headers.get("expect", "").lower() == "100-continue"

    @property
    def has_body(self) -> bool:
        """Whether body bytes follow the head."""
        return self.chunked or bool(self.content_length)


def parse_head(data: bytes) -> RequestHead:
    """Parse ``data``, a request head without its final blank line.

    :raises HttpError: 400 naming the first problem found.
    """
    lines = data.split(b"\r\n")
    match = _REQUEST_LINE.fullmatch(lines[0])
    if match is None:
        raise HttpError(400, f"Malformed request line {_shown(lines[0])}")
    if len(lines) - 1 > MAX_HEADERS:
        raise HttpError(400, f"More than {MAX_HEADERS} header lines")
    fields: List[Tuple[str, str]] = []
    headers: Dict[str, str] = {}
    for line in lines[1:]:
        header = _HEADER.fullmatch(line)
        if header is None:
            raise HttpError(400, f"Malformed header line {_shown(line)}")
        name = header.group(1).lower().decode("ascii")
        value = header.group(2).decode("latin-1")
        fields.append((name, value))
        if name in headers:
            if name in ("content-length", "host", "authorization", "x-rayfine-token"):
                raise HttpError(400, f"Repeated {name} header")
            headers[name] = headers[name] + ", " + value
        else:
            headers[name] = value
    target = _origin_form(match.group(2).decode("latin-1"))
    head = RequestHead(
        match.group(1).decode("ascii"), target, match.group(3).decode(), fields, headers
    )
    _frame_body(head)
    return head


def parse_response_head(data: bytes) -> Tuple[int, List[Tuple[str, str]]]:
    """Parse a response head (without its final blank line): status and header fields.

    Used in proxy mode on the app's answers.

    :raises HttpError: 502 naming the problem.
    """
    lines = data.split(b"\r\n")
    match = _STATUS_LINE.fullmatch(lines[0])
    if match is None or len(lines) - 1 > MAX_HEADERS:
        raise HttpError(502, f"The app sent a malformed response: {_shown(lines[0])}")
    fields: List[Tuple[str, str]] = []
    for line in lines[1:]:
        header = _HEADER.fullmatch(line)
        if header is None:
            raise HttpError(502, f"The app sent a malformed header line {_shown(line)}")
        fields.append((header.group(1).lower().decode("ascii"), header.group(2).decode("latin-1")))
    return int(match.group(1)), fields


def _origin_form(target: str) -> str:
    """``/path?query`` from either form a client may send (absolute form from proxies)."""
    if target.startswith("/"):
        return target
    absolute = _ABSOLUTE.match(target)
    if absolute is not None:
        return target[absolute.end() :] or "/"
    raise HttpError(400, f"Request target must be a path, got {target[:80]!r}")


def _frame_body(head: RequestHead) -> None:
    """Decide how the body is delimited: Content-Length, chunked, or none."""
    headers = head.headers
    if head.version == "1.1" and "host" not in headers:
        raise HttpError(400, "HTTP/1.1 requests need a Host header")
    coding = headers.get("transfer-encoding")
    length = headers.get("content-length")
    if coding is not None:
        if length is not None:
            raise HttpError(400, "Content-Length and Transfer-Encoding together are ambiguous")
        if head.version != "1.1" or coding.lower() != "chunked":
            raise HttpError(400, f"Unsupported Transfer-Encoding {coding[:40]!r}; only chunked")
        head.chunked = True
    elif length is not None:
        if not length.isdigit() or not length.isascii():
            raise HttpError(400, f"Content-Length must be a decimal number, got {length[:40]!r}")
        head.content_length = int(length[:20])  # 20 digits already exceed any limit


def _shown(line: bytes) -> str:
    return repr(line[:80])[1:] if line else "(empty)"


class ChunkedDecoder:
    """Turns a chunked request body into its data, chunk by chunk.

    :param limit: the largest body, in bytes, accepted.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._size = 0
        self._remaining = 0  # bytes of chunk data still to come
        self._state = "size"  # size | data | data_end | trailer | done
        self._trailer = 0
        self.done = False

    def feed(self, data: bytearray) -> List[bytes]:
        """Consume what it can of ``data`` (removed from it); return the body bytes found.

        :raises HttpError: 400 on bad framing, 413 once the body exceeds the limit.
        """
        out: List[bytes] = []
        while data and not self.done:
            if self._state == "data":
                piece = bytes(data[: self._remaining])
                del data[: len(piece)]
                self._remaining -= len(piece)
                out.append(piece)
                if self._remaining == 0:
                    self._state = "data_end"
                continue
            line = self._line(data)
            if line is None:
                break
            self._consume_line(line)
        return out

    def _line(self, data: bytearray) -> Optional[bytes]:
        end = data.find(b"\r\n")
        if end < 0:
            cap = MAX_TRAILER_BYTES if self._state == "trailer" else MAX_CHUNK_LINE
            if len(data) > cap:
                raise HttpError(400, "Chunk framing line too long")
            return None
        line = bytes(data[:end])
        del data[: end + 2]
        return line

    def _consume_line(self, line: bytes) -> None:
        if self._state == "data_end":
            if line:
                raise HttpError(400, "Chunk data longer than its declared size")
            self._state = "size"
        elif self._state == "size":
            match = _CHUNK_SIZE.fullmatch(line)
            if match is None:
                raise HttpError(400, f"Malformed chunk size line {_shown(line)}")
            size = int(match.group(1), 16)
            self._size += size
            if self._size > self._limit:
                raise HttpError(413, f"Request body exceeds the limit of {self._limit} bytes")
            self._remaining = size
            self._state = "data" if size else "trailer"
        else:  # trailer fields are read and dropped; a blank line ends the body
            self._trailer += len(line) + 2
            if self._trailer > MAX_TRAILER_BYTES:
                raise HttpError(400, "Chunked trailer too long")
            if not line:
                self.done = True
            elif _HEADER.fullmatch(line) is None:
                raise HttpError(400, f"Malformed trailer line {_shown(line)}")
