"""The gateway's HTTP server against malformed, oversized, slow and pipelined requests."""

from __future__ import annotations

import json
import time

import pytest
from conftest import read_all

from rayfine_remote.gateway import server


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        (b"NOT HTTP AT ALL\r\n\r\n", 400),
        (b"GET /v1/info HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n\r\n", 400),
        (
            b"GET /v1/info HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
            400,
        ),
        (b"GET /" + b"a" * (70 * 1024) + b" HTTP/1.1\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\n" + b"".join(b"x-%d: y\r\n" % i for i in range(150)) + b"\r\n", 431),
        (
            b"POST /v1/envs/x/proxy/call HTTP/1.1\r\nhost: x\r\ncontent-length: 99999999999\r\n\r\n",
            413,
        ),
    ],
)
def test_bad_requests_are_answered_and_closed(tls_connect, request_bytes, status):
    with tls_connect() as sock:
        sock.sendall(request_bytes)
        answer = read_all(sock)  # the server closes the connection after answering
    assert _status(answer) == status, answer[:200]


def test_a_chunked_body_over_the_cap_is_refused_while_it_arrives(gateway, tls_connect, monkeypatch):
    monkeypatch.setattr(gateway.served.gateway.config, "max_body_bytes", 100_000)
    with tls_connect() as sock:
        sock.sendall(
            b"POST /v1/envs/x/proxy/call HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n"
            b"authorization: Bearer " + gateway.tokens["alice"].encode() + b"\r\n\r\n"
        )
        try:
            for _ in range(10):
                sock.sendall(b"%x\r\n%s\r\n" % (50_000, b"z" * 50_000))
        except OSError:
            pass  # closed on us: that is the point
        answer = read_all(sock)
    assert _status(answer) == 413


def test_pipelined_requests_are_answered_in_order(gateway, tls_connect):
    auth = b"authorization: Bearer " + gateway.tokens["alice"].encode() + b"\r\n"
    with tls_connect() as sock:
        sock.sendall(
            b"GET /v1/info HTTP/1.1\r\nhost: x\r\n" + auth + b"\r\n"
            b"GET /v1/envs HTTP/1.1\r\nhost: x\r\n" + auth + b"\r\n"
            b"GET /v1/info HTTP/1.1\r\nhost: x\r\nconnection: close\r\n" + auth + b"\r\n"
        )
        answer = read_all(sock)
    parts = answer.split(b"HTTP/1.1 200 OK")
    assert len(parts) == 4, answer[:300]
    assert b'"client":"alice"' in parts[1] and b'"containers"' in parts[2]


def test_http_1_0_and_connection_close_end_the_connection(gateway, tls_connect):
    auth = b"authorization: Bearer " + gateway.tokens["alice"].encode() + b"\r\n"
    with tls_connect() as sock:
        sock.sendall(b"GET /v1/info HTTP/1.0\r\n" + auth + b"\r\n")
        answer = read_all(sock)
    assert (
        _status(answer) == 200 and json.loads(answer.split(b"\r\n\r\n", 1)[1])["client"] == "alice"
    )


def test_a_slow_head_is_cut_off(tls_connect, monkeypatch):
    monkeypatch.setattr(server, "HEAD_TIMEOUT", 0.5)
    with tls_connect() as sock:
        sock.sendall(b"GET /v1/info HTTP/1.1\r\nhost: x\r\n")  # and never the end of the head
        started = time.monotonic()
        assert read_all(sock) == b""
    assert time.monotonic() - started < 5


def test_an_idle_connection_is_closed(tls_connect, monkeypatch):
    monkeypatch.setattr(server, "IDLE_TIMEOUT", 0.5)
    with tls_connect() as sock:
        started = time.monotonic()
        assert read_all(sock) == b""
    assert time.monotonic() - started < 5
