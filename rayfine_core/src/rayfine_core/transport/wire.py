"""HTTP/1.1 framing for the clients, without I/O.

The clients talk to one server each, over a private Unix socket or a
127.0.0.1 port, so they need only a small part of HTTP: keep-alive
connections, requests sent in one write, responses framed by
Content-Length, chunked encoding or connection close.  Doing just that here
(instead of through a general-purpose client) keeps a call to a few
microseconds of client work and one write; see ``bench/run.py``.

The response parser accepts exactly what h11 accepts (``tests/test_wire_strict.py``
checks that on generated and mangled responses, split at random points), with
four refusals h11 does not make, each a way for two parsers to disagree on
where a response ends: a head with both Transfer-Encoding and Content-Length,
a repeated Content-Length (even with equal values), an HTTP major version
other than 1, and a head, trailer section or chunk-size line longer than
:data:`MAX_HEAD_BYTES`, however its bytes arrive.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

MAX_HEAD_BYTES = 64 * 1024
"""Longest status line plus header section (also: trailer section, chunk-size line) accepted."""

_Buffer = Union[bytes, bytearray]

# The grammar is h11's (RFC 9110/9112 with its documented leniencies); see _abnf.py there.
_STATUS_LINE = re.compile(rb"HTTP/([0-9])\.([0-9]) ([0-9]{3})(?: [^\x00\n\r\x0b\x0c]*)?")
# A field line is token ":" then OWS field-value OWS; what may follow the colon is
# exactly the characters below, and the value is that text stripped of SP/HTAB.
_FIELD = r"([-!#$%&'*+.^_`|~0-9A-Za-z]+):([^\x00\n\r\x0b\x0c]*)"
_FIELD_LINE = re.compile(_FIELD)
_CRLF_FIELD_LINES = re.compile(r"^" + _FIELD + r"\r\n", re.MULTILINE)
_BLANK_LINE = re.compile(rb"\n\r?\n")
_CHUNK_SIZE_LINE = re.compile(rb"([0-9A-Fa-f]{1,20})(?:;[^\n]*)?[ \t]*")
_CONTENT_LENGTH = re.compile(r"[0-9]{1,20}")

_HEAD, _LENGTH, _UNTIL_CLOSE, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER = range(7)


class ProtocolError(Exception):
    """The server's answer is not HTTP/1.1 as this client reads it, or was cut short."""


@dataclass
class Response:
    """A complete response; header names are lower-case, repeated fields joined by ", "."""

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
        (host, authorization), encoded once per client by :func:`fixed_headers`.
    """
    if body is None:
        return f"{verb} {path} HTTP/1.1\r\n".encode() + fixed_headers + b"\r\n"
    head = f"{verb} {path} HTTP/1.1\r\ncontent-type: application/json\r\n"
    return f"{head}content-length: {len(body)}\r\n".encode() + fixed_headers + b"\r\n" + body


def fixed_headers(host: str, token: Optional[str]) -> bytes:
    """The host and authorization lines, checked once so no value can inject a header."""
    if any(char in value for value in (host, token or "") for char in "\r\n\x00"):
        raise ValueError("host and token must not contain line breaks or NUL")
    lines = [f"host: {host}"] + ([f"authorization: Bearer {token}"] if token else [])
    return "".join(line + "\r\n" for line in lines).encode("latin-1")


class ResponseParser:
    """Reads one response from the bytes fed to it.

    ``feed`` returns True once the response is complete (then see
    :attr:`response` and :attr:`keep_alive`); ``feed_eof`` is called when the
    server closes the connection.  Interim (1xx) responses are skipped.  Both
    raise :class:`ProtocolError` on anything malformed.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()  # bytes fed but not consumed yet
        self._scan = 0  # offset in _buffer from which a line end is still to be searched
        self._state = _HEAD
        self._response: Optional[Response] = None
        self._parts: list[_Buffer] = []
        self._remaining = 0  # body bytes still expected (length framing, current chunk)
        self.keep_alive = True
        self.complete = False

    @property
    def response(self) -> Response:
        assert self.complete and self._response is not None
        return self._response

    def feed(self, data: bytes) -> bool:
        if self.complete:
            self.keep_alive = self.keep_alive and not data  # bytes nobody asked for
            return True
        if self._buffer:
            self._buffer += data
            buf: _Buffer = self._buffer
        else:
            buf = data  # the common case, a whole response in one read: no copy
        pos = 0
        while not self.complete:
            step = _STEPS[self._state](self, buf, pos)
            if step is None:
                break
            pos = step
        if self.complete:
            self.keep_alive = self.keep_alive and pos == len(buf)
            self._buffer = bytearray()
        elif buf is self._buffer:
            del self._buffer[:pos]
        elif pos < len(buf):
            self._buffer = bytearray(buf[pos:])
        return self.complete

    def feed_eof(self) -> bool:
        """The server closed the connection: the end of an unframed body, else an error."""
        self.keep_alive = False
        if not self.complete and self._state == _UNTIL_CLOSE:
            self._finish()
        if not self.complete:
            raise ProtocolError("the server closed the connection before the response was complete")
        return True

    # -- one method per state: consume from buf[pos:], return the new pos or None (need more)

    def _head(self, buf: _Buffer, pos: int) -> Optional[int]:
        if len(buf) - pos >= 5 and not buf.startswith(b"HTTP/", pos):
            raise ProtocolError(f"not an HTTP/1.x status line: {bytes(buf[pos : pos + 40])!r}")
        lines, end = self._block(buf, pos, "response head")
        if lines is None:
            return None
        status_line, _, fields = lines.partition(b"\n")
        match = _STATUS_LINE.fullmatch(_strip_cr(status_line))
        if match is None or match.group(1) != b"1":
            raise ProtocolError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
        status = int(match.group(3))
        headers = _fields(fields)
        if status < 200:
            if status < 100 or status == 101:  # 101 answers an Upgrade, which was never asked
                raise ProtocolError(f"unexpected status {status} for a plain request")
            return end  # interim response: the final one follows
        self._response = Response(status, headers)
        self._frame(headers, http11=match.group(2) != b"0")
        return end

    def _frame(self, headers: dict[str, str], http11: bool) -> None:
        """Choose the body's framing (RFC 9112 section 6.3, for responses to GET/POST)."""
        assert self._response is not None
        connection = headers.get("connection")
        self.keep_alive = http11 and not (
            connection and "close" in [t.strip().lower() for t in connection.split(",")]
        )
        if self._response.status_code in (204, 304):
            self._finish()
        elif "transfer-encoding" in headers:
            self._state = _CHUNK_SIZE
        elif "content-length" in headers:
            self._remaining = int(headers["content-length"])
            self._state = _LENGTH
            if not self._remaining:
                self._finish()
        else:
            self.keep_alive = False  # the body ends when the server closes the connection
            self._state = _UNTIL_CLOSE

    def _length(self, buf: _Buffer, pos: int) -> Optional[int]:
        if pos == len(buf):
            return None
        end = min(len(buf), pos + self._remaining)
        self._parts.append(_slice(buf, pos, end))
        self._remaining -= end - pos
        if not self._remaining:
            if self._state == _LENGTH:
                self._finish()
            else:
                self._state, self._remaining = _CHUNK_END, 2
        return end

    def _until_close(self, buf: _Buffer, pos: int) -> Optional[int]:
        if pos == len(buf):
            return None
        self._parts.append(_slice(buf, pos, len(buf)))
        return len(buf)

    def _chunk_size(self, buf: _Buffer, pos: int) -> Optional[int]:
        end = buf.find(b"\r\n", pos + self._scan)
        if end < 0:
            self._scan = max(0, len(buf) - pos - 1)
            if len(buf) - pos > MAX_HEAD_BYTES + 1:  # the last byte may be the CR of CRLF
                raise ProtocolError("chunk-size line is too long")
            return None
        self._scan = 0
        match = _CHUNK_SIZE_LINE.fullmatch(buf, pos, end)
        if end - pos > MAX_HEAD_BYTES:
            raise ProtocolError("chunk-size line is too long")
        if match is None:
            raise ProtocolError(f"bad chunk-size line {bytes(buf[pos:end])[:40]!r}")
        self._remaining = int(match.group(1), 16)
        self._state = _CHUNK_DATA if self._remaining else _TRAILER
        return end + 2

    def _chunk_end(self, buf: _Buffer, pos: int) -> Optional[int]:
        expected = b"\r\n"[2 - self._remaining :]
        got = bytes(buf[pos : pos + len(expected)])
        if not got:
            return None
        if not expected.startswith(got):
            raise ProtocolError(f"chunk data not followed by CRLF but {got!r}")
        self._remaining -= len(got)
        if not self._remaining:
            self._state = _CHUNK_SIZE
        return pos + len(got)

    def _trailer(self, buf: _Buffer, pos: int) -> Optional[int]:
        for empty in (b"\n", b"\r\n"):  # no trailer fields (h11 reads a lone LF too)
            if buf[pos : pos + len(empty)] == empty:
                self._finish()
                return pos + len(empty)
        lines, end = self._block(buf, pos, "trailer section")
        if lines is None:
            return None
        _fields(lines)  # validated, then dropped: no caller reads trailers
        self._finish()
        return end

    def _block(self, buf: _Buffer, pos: int, what: str) -> tuple[Optional[bytes], int]:
        """Lines up to a blank line (each keeping its line break), and the offset past it."""
        blank = _BLANK_LINE.search(buf, pos + self._scan)
        if blank is None:
            self._scan = max(0, len(buf) - pos - 2)
            if len(buf) - pos >= MAX_HEAD_BYTES:  # the blank line would end past the cap
                raise ProtocolError(f"{what} is too large")
            return None, pos
        self._scan = 0
        if blank.end() - pos > MAX_HEAD_BYTES:
            raise ProtocolError(f"{what} is too large")
        return bytes(buf[pos : blank.start() + 1]), blank.end()

    def _finish(self) -> None:
        assert self._response is not None
        self._response.content = b"".join(self._parts)  # one part of bytes: that object, no copy
        self._parts = []
        self.complete = True


_STEPS: dict[int, Callable[[ResponseParser, _Buffer, int], Optional[int]]] = {
    _HEAD: ResponseParser._head,
    _LENGTH: ResponseParser._length,
    _UNTIL_CLOSE: ResponseParser._until_close,
    _CHUNK_SIZE: ResponseParser._chunk_size,
    _CHUNK_DATA: ResponseParser._length,
    _CHUNK_END: ResponseParser._chunk_end,
    _TRAILER: ResponseParser._trailer,
}


def _slice(buf: _Buffer, start: int, end: int) -> _Buffer:
    """``buf[start:end]``; the very object when that is all of an immutable ``bytes``."""
    if start == 0 and end == len(buf) and type(buf) is bytes:
        return buf
    return buf[start:end]  # a copy: the bytearray it may come from is reused


def _strip_cr(line: bytes) -> bytes:
    return line[:-1] if line.endswith(b"\r") else line


def _fields(lines: bytes) -> dict[str, str]:
    """Header (or trailer) field lines, each ending in a line break, as a dict.

    Lines that all end in CRLF take one regex scan; any other shape (bare LF,
    obs-fold, errors) goes through :func:`_field_pairs`.
    """
    text = lines.decode("latin-1")
    pairs = _CRLF_FIELD_LINES.findall(text)
    if len(pairs) != text.count("\n"):
        pairs = _field_pairs(text)
    headers = {name.lower(): value.strip(" \t") for name, value in pairs}
    if len(headers) != len(pairs):
        headers = _join_repeated(pairs)
    length, coding = headers.get("content-length"), headers.get("transfer-encoding")
    if length is not None and not _CONTENT_LENGTH.fullmatch(length):
        raise ProtocolError(f"bad content-length {length[:40]!r}")
    if coding is not None:
        if coding.lower() != "chunked":
            raise ProtocolError(f"unsupported transfer-encoding {coding[:40]!r}")
        if length is not None:
            raise ProtocolError("both transfer-encoding and content-length: framing is ambiguous")
    return headers


def _join_repeated(pairs: list[tuple[str, str]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw_name, raw_value in pairs:
        name, value = raw_name.lower(), raw_value.strip(" \t")
        if name in headers:
            if name in ("content-length", "transfer-encoding"):
                raise ProtocolError(f"repeated {name} header")
            headers[name] += ", " + value
        else:
            headers[name] = value
    return headers


def _field_pairs(text: str) -> list[tuple[str, str]]:
    """The general case: bare-LF line ends and obs-fold (joined with one space, RFC 9112 5.2)."""
    unfolded: list[str] = []
    for line in text.split("\n")[:-1]:
        line = line[:-1] if line.endswith("\r") else line
        if line[:1] in (" ", "\t"):
            if not unfolded:
                raise ProtocolError("continuation line at start of header fields")
            unfolded[-1] += " " + line.lstrip(" \t")
        else:
            unfolded.append(line)
    pairs = []
    for line in unfolded:
        match = _FIELD_LINE.fullmatch(line)
        if match is None:
            raise ProtocolError(f"bad header line {line[:80]!r}")
        pairs.append((match.group(1), match.group(2)))
    return pairs
