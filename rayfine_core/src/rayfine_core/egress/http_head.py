"""Parse the request a client sends to the egress proxy, strictly.

Two forms are accepted: ``CONNECT host:port`` (a tunnel, usually for TLS)
and a plain-HTTP request with an absolute URI (``GET http://host/path``).
Anything ambiguous, which one side could read differently from the other
(folded or duplicated headers, both Content-Length and Transfer-Encoding,
bare line feeds, a Host header naming another host), is refused rather than
repaired, so that what the policy judged is what the upstream receives.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from . import addresses
from .policy import normalize_host, parse_port, split_host_port

MAX_HEADERS = 100
_REQUEST_LINE = re.compile(rb"^([A-Z]{1,20}) ([\x21-\x7e]+) HTTP/(1\.[01])$")
_TOKEN = re.compile(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_BAD_VALUE_BYTES = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# Hop-by-hop headers (RFC 9110 7.6.1) plus the proxy's own: never forwarded upstream.
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authorization",
        b"proxy-authenticate",
        b"te",
        b"trailer",
        b"upgrade",
    }
)


_FRAMING = frozenset({b"host", b"content-length", b"transfer-encoding"})


class BadRequest(Exception):
    """The request cannot be accepted; ``status`` and ``reason`` go to the client and the log."""

    def __init__(
        self, status: int, reason: str, detail: str, host: str = "", port: int = 0
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail
        self.host = host  # the target, when it was parsed before the refusal
        self.port = port


@dataclass(frozen=True)
class ProxyRequest:
    """What the client asked for: a tunnel to ``host:port``, or one plain-HTTP request there."""

    connect: bool
    host: str  # a DNS name (lower case) or an IP literal without brackets
    port: int
    upstream_head: bytes = b""  # plain HTTP: the head to send upstream (origin-form)


def parse_request(head: bytes) -> ProxyRequest:
    """Parse a complete request head (ending with CRLF CRLF); raises :class:`BadRequest`."""
    if not head.endswith(b"\r\n\r\n"):
        raise BadRequest(400, "bad_request", "request head must end with CRLF CRLF")
    lines = head[:-4].split(b"\r\n")
    if any(b"\n" in line or b"\r" in line for line in lines):
        raise BadRequest(400, "bad_request", "bare CR or LF in the request head")
    match = _REQUEST_LINE.match(lines[0])
    if not match:
        raise BadRequest(400, "bad_request", "malformed request line")
    method, target, version = match.groups()
    headers = _parse_headers(lines[1:])
    if method == b"CONNECT":
        return _connect(target, headers)
    return _absolute(method, target, version, headers, lines[1:])


def _parse_headers(lines: list[bytes]) -> list[tuple[bytes, bytes]]:
    if len(lines) > MAX_HEADERS:
        raise BadRequest(431, "header_too_large", f"more than {MAX_HEADERS} header lines")
    headers = []
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            raise BadRequest(400, "bad_request", "folded header lines are not accepted")
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.match(name):
            raise BadRequest(400, "bad_request", "malformed header line")
        value = value.strip(b" \t")
        if _BAD_VALUE_BYTES.search(value):
            raise BadRequest(400, "bad_request", "control character in a header value")
        headers.append((name.lower(), value))
    _check_framing(headers)
    return headers


def _check_framing(headers: list[tuple[bytes, bytes]]) -> None:
    lengths = [v for n, v in headers if n == b"content-length"]
    encodings = [v for n, v in headers if n == b"transfer-encoding"]
    if lengths and encodings:
        raise BadRequest(400, "ambiguous_length", "both Content-Length and Transfer-Encoding")
    if len(lengths) > 1 or (lengths and not lengths[0].isdigit()):
        raise BadRequest(400, "ambiguous_length", "Content-Length must appear once, as digits")
    if len(encodings) > 1 or (encodings and encodings[0].lower() != b"chunked"):
        raise BadRequest(400, "ambiguous_length", "Transfer-Encoding other than 'chunked'")


def _authority(text: bytes, default_port: Optional[int]) -> tuple[str, int]:
    """``host`` and ``port`` of an authority, host normalized; raises :class:`BadRequest`."""
    try:
        decoded = text.decode("ascii")
    except UnicodeDecodeError:
        raise BadRequest(400, "bad_host", "non-ASCII host") from None
    if "@" in decoded:
        raise BadRequest(400, "bad_host", "user information in the authority is not accepted")
    host, port_text = split_host_port(decoded)
    if port_text is None and default_port is None:
        raise BadRequest(400, "bad_host", "CONNECT needs host:port")
    port = default_port if port_text is None else parse_port(port_text)
    if port is None:
        raise BadRequest(400, "bad_host", "invalid port")
    address = addresses.parse_ip(host) if host[:1].isdigit() or ":" in host else None
    if address is not None:
        return str(address), port
    name = normalize_host(host)
    if name is None:
        raise BadRequest(400, "bad_host", "not a valid host name")
    return name, port


def _connect(target: bytes, headers: list[tuple[bytes, bytes]]) -> ProxyRequest:
    if any(n == b"transfer-encoding" or (n == b"content-length" and v != b"0") for n, v in headers):
        raise BadRequest(400, "bad_request", "a CONNECT request carries no body")
    host, port = _authority(target, None)
    return ProxyRequest(connect=True, host=host, port=port)


def _absolute(
    method: bytes,
    target: bytes,
    version: bytes,
    headers: list[tuple[bytes, bytes]],
    raw_lines: list[bytes],
) -> ProxyRequest:
    lowered = target.lower()
    if lowered.startswith(b"https://"):
        raise BadRequest(400, "use_connect", "https:// URIs go through CONNECT")
    if not lowered.startswith(b"http://"):
        raise BadRequest(400, "not_absolute_uri", "a proxy request needs an absolute http:// URI")
    rest = target[7:]
    cut = min((i for i in (rest.find(b"/"), rest.find(b"?")) if i >= 0), default=len(rest))
    authority, path = rest[:cut], rest[cut:]
    if b"#" in path:
        raise BadRequest(400, "bad_request", "fragment in the request target")
    host, port = _authority(authority, 80)
    hosts = [v for n, v in headers if n == b"host"]
    if len(hosts) > 1 or (version == b"1.1" and not hosts):
        raise BadRequest(400, "bad_request", "exactly one Host header is required")
    if hosts and _authority(hosts[0], 80) != (host, port):
        raise BadRequest(403, "host_header_mismatch", "Host header names another host", host, port)
    path = path if path.startswith(b"/") else b"/" + path
    return ProxyRequest(
        connect=False,
        host=host,
        port=port,
        upstream_head=_upstream_head(method, path, version, headers, raw_lines),
    )


def _upstream_head(
    method: bytes,
    path: bytes,
    version: bytes,
    headers: list[tuple[bytes, bytes]],
    raw_lines: list[bytes],
) -> bytes:
    """The request in origin-form, hop-by-hop headers dropped, one request per connection."""
    # A client may name headers in Connection to drop them, but never the ones
    # that frame the request: dropping those would change what upstream parses.
    listed = {
        token.strip().lower()
        for name, value in headers
        if name == b"connection"
        for token in value.split(b",")
    } - _FRAMING
    kept = [
        line
        for (name, _), line in zip(headers, raw_lines)
        if name not in _HOP_BY_HOP and name not in listed
    ]
    out = [method + b" " + path + b" HTTP/" + version, *kept, b"Connection: close"]
    return b"\r\n".join(out) + b"\r\n\r\n"
