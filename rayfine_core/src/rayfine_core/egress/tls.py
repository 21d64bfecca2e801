"""Read the server name (SNI) from the first bytes of a TLS connection.

Only the ClientHello is read, which is sent in the clear; nothing is
decrypted.  The hello may span several TLS records; it is reassembled up to
:data:`MAX_HELLO_BYTES`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Optional

from .policy import normalize_host

MAX_HELLO_BYTES = 64 * 1024
_HANDSHAKE = 0x16
_CLIENT_HELLO = 0x01
_SERVER_NAME = 0x0000
_HOST_NAME = 0x00


@dataclass(frozen=True)
class Hello:
    """The outcome of looking at a connection's first bytes.

    ``status`` is ``"more"`` (need more bytes), ``"not_tls"``, ``"malformed"``
    or ``"ok"``; with ``"ok"``, ``server_name`` is the SNI (lower case, no
    trailing dot) or None when the client sent none.
    """

    status: str
    server_name: Optional[str] = None


def looks_like_tls(first: bytes) -> bool:
    """Whether a connection starting with ``first`` (at least one byte) starts a TLS handshake."""
    return first[:1] == bytes([_HANDSHAKE])


def read_client_hello(data: bytes) -> Hello:
    """Judge the bytes received so far on a connection that should start with a ClientHello."""
    if not data:
        return Hello("more")
    if not looks_like_tls(data):
        return Hello("not_tls")
    message = bytearray()
    offset = 0
    while True:
        if len(data) - offset < 5:
            return Hello("more")
        kind, major, length = (
            data[offset],
            data[offset + 1],
            struct.unpack_from("!H", data, offset + 3)[0],
        )
        if kind != _HANDSHAKE or major != 3 or length == 0 or length > 16384 + 2048:
            return Hello("malformed")
        if len(data) - offset - 5 < length:
            return Hello("more") if len(data) < MAX_HELLO_BYTES else Hello("malformed")
        message += data[offset + 5 : offset + 5 + length]
        offset += 5 + length
        if len(message) >= 4:
            if message[0] != _CLIENT_HELLO:
                return Hello("malformed")
            needed = 4 + int.from_bytes(message[1:4], "big")
            if needed > MAX_HELLO_BYTES:
                return Hello("malformed")
            if len(message) >= needed:
                return _server_name(bytes(message[4:needed]))


def _server_name(body: bytes) -> Hello:
    """The SNI in a ClientHello body (after its 4-byte handshake header)."""
    try:
        pos = 2 + 32  # client_version, random
        pos += 1 + body[pos]  # session_id
        pos += 2 + struct.unpack_from("!H", body, pos)[0]  # cipher_suites
        pos += 1 + body[pos]  # compression_methods
        if pos == len(body):
            return Hello("ok")  # no extensions at all
        end = pos + 2 + struct.unpack_from("!H", body, pos)[0]
        if end != len(body):
            return Hello("malformed")
        pos += 2
        names: list[str] = []
        seen: set[int] = set()
        while pos < end:
            ext_type, ext_len = struct.unpack_from("!HH", body, pos)
            pos += 4
            if ext_type in seen or pos + ext_len > end:
                return Hello("malformed")  # duplicate extensions are illegal (RFC 8446 4.2)
            seen.add(ext_type)
            if ext_type == _SERVER_NAME:
                parsed = _names(body[pos : pos + ext_len])
                if parsed is None:
                    return Hello("malformed")
                names += parsed
            pos += ext_len
    except (IndexError, struct.error):
        return Hello("malformed")
    if len(names) > 1:
        return Hello("malformed")
    return Hello("ok", names[0] if names else None)


def _names(ext: bytes) -> Optional[list[str]]:
    """Host names in a server_name extension, or None if it is malformed."""
    if len(ext) < 2 or struct.unpack_from("!H", ext, 0)[0] != len(ext) - 2:
        return None
    pos, names = 2, []
    while pos < len(ext):
        if pos + 3 > len(ext):
            return None
        kind, length = ext[pos], struct.unpack_from("!H", ext, pos + 1)[0]
        raw = ext[pos + 3 : pos + 3 + length]
        if len(raw) != length:
            return None
        if kind == _HOST_NAME:
            try:
                name = normalize_host(raw.decode("ascii"))
            except UnicodeDecodeError:
                return None
            if name is None:
                return None
            names.append(name)
        pos += 3 + length
    return names
