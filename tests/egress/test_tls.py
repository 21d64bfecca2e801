"""Reading the server name from real ClientHellos, made in memory by Python's ssl module."""

from __future__ import annotations

import ssl
import struct
from typing import Optional

import pytest

from rayfine_core.egress.tls import Hello, read_client_hello


def client_hello(server_name: Optional[str]) -> bytes:
    context = ssl.create_default_context()
    if server_name is None:
        context.check_hostname = False
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def split_records(hello: bytes, size: int) -> bytes:
    """The same handshake message carried by several TLS records of at most ``size`` bytes."""
    body = hello[5:]
    out = b""
    for i in range(0, len(body), size):
        piece = body[i : i + size]
        out += hello[:3] + struct.pack("!H", len(piece)) + piece
    return out


def test_server_name_is_read() -> None:
    assert read_client_hello(client_hello("API.Example.com")) == Hello("ok", "api.example.com")


def test_no_server_name() -> None:
    assert read_client_hello(client_hello(None)) == Hello("ok", None)


def test_a_hello_split_over_records_is_reassembled() -> None:
    data = split_records(client_hello("api.example.com"), 50)
    assert read_client_hello(data) == Hello("ok", "api.example.com")


def test_partial_data_asks_for_more() -> None:
    data = client_hello("api.example.com")
    for cut in (0, 1, 4, 5, 40, len(data) - 1):
        assert read_client_hello(data[:cut]).status == "more"


@pytest.mark.parametrize(
    "data, status",
    [
        (b"GET / HTTP/1.1\r\n", "not_tls"),
        (b"\x16\x03\x01\x00\x00", "malformed"),  # empty record
        (b"\x16\x02\x00\x00\x05hello", "malformed"),  # not TLS 1.x
        (b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00", "malformed"),  # a ServerHello
        (b"\x16\x03\x01\xff\xff", "malformed"),  # record longer than TLS allows
    ],
)
def test_malformed(data: bytes, status: str) -> None:
    assert read_client_hello(data).status == status


def with_extension(hello: bytes, extension: bytes) -> bytes:
    """``hello`` with ``extension`` appended to its extensions, every length patched."""
    body = bytearray(hello[5:])
    # Lengths to patch: handshake (3 bytes at 1), extensions block (2 bytes, found by walking).
    body[1:4] = (int.from_bytes(body[1:4], "big") + len(extension)).to_bytes(3, "big")
    pos = 4 + 2 + 32
    pos += 1 + body[pos]
    pos += 2 + struct.unpack_from("!H", body, pos)[0]
    pos += 1 + body[pos]
    struct.pack_into("!H", body, pos, struct.unpack_from("!H", body, pos)[0] + len(extension))
    body += extension
    return hello[:3] + struct.pack("!H", len(body)) + bytes(body)


def test_two_server_name_extensions_are_refused() -> None:
    hello = client_hello("api.example.com")
    marker = b"\x00\x00" + struct.pack("!H", 2 + 3 + len("api.example.com"))
    start = hello.index(marker)
    length = 4 + struct.unpack_from("!H", hello, start + 2)[0]
    second = hello[start : start + length].replace(b"api.example.com", b"evil.example.co")
    assert read_client_hello(with_extension(hello, second)).status == "malformed"
    # The same surgery with an unknown extension type parses: the refusal is for the duplicate.
    other = b"\xfa\xfa" + second[2:]
    assert read_client_hello(with_extension(hello, other)) == Hello("ok", "api.example.com")


def test_garbage_never_raises() -> None:
    import random

    rng = random.Random(7)
    real = client_hello("api.example.com")
    for _ in range(2000):
        data = bytearray(real)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        read_client_hello(bytes(data[: rng.randint(0, len(data))]))
