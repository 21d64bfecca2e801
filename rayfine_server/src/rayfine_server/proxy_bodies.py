"""Proxy mode's body plumbing: how the app's answer is framed, and relayed to the client.

Responses with a length are passed through; chunked ones and those that end
when the app closes are re-framed as chunked, so the client's keep-alive
connection survives them.  After ``101 Switching Protocols`` both
connections are joined into a byte tunnel.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, Awaitable, Callable, List, Optional, Tuple

from .httpparse import ChunkedDecoder, HttpError

READ_SIZE = 64 * 1024
# Hop-by-hop headers, and those the proxy sets itself or must not pass on.
DROPPED = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "proxy-authenticate",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
        "host",
        "content-length",
        "x-rayfine-token",
    }
)

Streams = Tuple[asyncio.StreamReader, asyncio.StreamWriter]


def header_value(fields: List[Tuple[str, str]], name: str) -> str:
    """Every value of header ``name``, joined as HTTP joins repeated headers."""
    return ", ".join(value for key, value in fields if key == name)


def encode_fields(fields: List[Tuple[str, str]], keep: Tuple[str, ...] = ()) -> bytes:
    """Header lines to pass on: all but :data:`DROPPED` (unless named in ``keep``)."""
    return b"".join(
        f"{name}: {value}\r\n".encode("latin-1")
        for name, value in fields
        if name not in DROPPED or name in keep
    )


def response_framing(
    method: str, status: int, fields: List[Tuple[str, str]]
) -> Tuple[Optional[int], bool]:
    """``(length, chunked)``: length 0 for no body, ``None`` for chunked or until close."""
    if method == "HEAD" or status in (204, 304) or status < 200:
        return 0, False
    if "chunked" in header_value(fields, "transfer-encoding").lower():
        return None, True
    declared = header_value(fields, "content-length")
    if declared:
        if not declared.isdigit():
            raise HttpError(502, f"The app sent a bad Content-Length {declared[:40]!r}")
        return int(declared), False
    return None, False


def length_header(method: str, fields: List[Tuple[str, str]], length: int) -> bytes:
    """For bodiless answers: HEAD keeps the app's declared length; others say 0."""
    declared = header_value(fields, "content-length")
    if method == "HEAD" and declared.isdigit():
        return b"content-length: %s\r\n" % declared.encode()
    return b"content-length: %d\r\n" % length


async def fixed_length(reader: asyncio.StreamReader, length: int) -> AsyncIterator[bytes]:
    remaining = length
    while remaining:
        data = await reader.read(min(READ_SIZE, remaining))
        if not data:
            raise ConnectionResetError("the app closed the connection mid-body")
        remaining -= len(data)
        yield data


async def dechunked(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    decoder = ChunkedDecoder(2**62)
    buffer = bytearray()
    while not decoder.done:
        data = await reader.read(READ_SIZE)
        if not data:
            raise ConnectionResetError("the app closed the connection mid-body")
        buffer += data
        for piece in decoder.feed(buffer):
            yield piece


async def until_close(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while True:
        data = await reader.read(READ_SIZE)
        if not data:
            return
        yield data


async def rechunked(pieces: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    async for piece in pieces:
        if piece:  # an empty chunk would end the body
            yield b"%x\r\n%s\r\n" % (len(piece), piece)
    yield b"0\r\n\r\n"


async def relay(
    streams: Streams,
    body: AsyncIterator[bytes],
    release: Optional[Callable[[Streams, bool], None]],
) -> AsyncIterator[bytes]:
    """``body``, then the upstream connection back to the pool (or closed)."""
    complete = False
    try:
        async for piece in body:
            yield piece
        complete = True
    finally:
        if release is not None:
            release(streams, complete)
        else:
            streams[1].close()


class Tunnel:
    """The client's connection and the app's, joined after ``101 Switching Protocols``."""

    def __init__(self, streams: Streams) -> None:
        self._reader, self._writer = streams

    def send(self, data: bytes) -> None:
        if not self._writer.is_closing():
            self._writer.write(data)

    async def pump(self, write: Callable[[bytes], Awaitable[None]]) -> None:
        while True:
            data = await self._reader.read(READ_SIZE)
            if not data:
                return
            await write(data)

    def close(self) -> None:
        self._writer.close()
