"""HTTP/1.1 as the server reads and writes it: keep-alive, framing, strict parsing."""

from __future__ import annotations

import json
import socket
import time

import pytest
from server_helpers import TOKEN, error_of, raw, request_bytes

ENV = """
    def echo(x=None):
        return x
"""

CALL = json.dumps({"method": "echo", "args": [1]}).encode()


def responses(data: bytes) -> list:
    """Split a byte stream into (status, headers, body) responses (Content-Length framed)."""
    found = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        length = int(headers.get("content-length", 0))
        found.append((int(lines[0].split()[1]), headers, rest[:length]))
        data = rest[length:]
    return found


@pytest.fixture(scope="module")
def sock_path(serve_shared):
    return serve_shared(ENV).sock


def test_keep_alive_and_pipelining(sock_path):
    one = request_bytes("POST", "/call", CALL)
    last = request_bytes("GET", "/health", headers={"connection": "close"})
    answered = responses(raw(sock_path, one + one + last))
    assert [status for status, _, _ in answered] == [200, 200, 200]
    assert answered[0][2] == b'{"result":1}'


def test_chunked_request_body(sock_path):
    body = b'{"method": "echo", "args": ["chunked"]}'
    chunked = b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + 7]), body[i : i + 7]) for i in range(0, len(body), 7)
    )
    request = (
        (
            f"POST /call HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\n"
            "transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        ).encode()
        + chunked
        + b"0;ext=1\r\ntrailer: x\r\n\r\n"
    )
    ((status, _, answer),) = responses(raw(sock_path, request))
    assert (status, answer) == (200, b'{"result":"chunked"}')


def test_expect_100_continue(sock_path):
    head = (
        f"POST /call HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\n"
        f"expect: 100-continue\r\ncontent-length: {len(CALL)}\r\n\r\n"
    ).encode()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(sock_path)
        sock.sendall(head)
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(CALL)
        assert sock.recv(1000).endswith(b'{"result":1}')


def test_expect_100_continue_refused_early_when_too_large(serve):
    server = serve(ENV, max_body=100)
    head = (
        f"POST /call HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\n"
        "expect: 100-continue\r\ncontent-length: 5000000\r\n\r\n"
    ).encode()
    ((status, headers, body),) = responses(raw(server.sock, head))
    assert status == 413 and headers["connection"] == "close"
    assert json.loads(body)["error"]["kind"] == "too_large"


@pytest.mark.parametrize(
    "head, fragment",
    [
        (b"POST /call HTTP/1.1\r\nhost: x\r\ncontent-length: -1\r\n", "Content-Length must be"),
        (b"POST /call HTTP/1.1\r\nhost: x\r\ncontent-length: 1e3\r\n", "Content-Length must be"),
        (
            b"POST /call HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ncontent-length: 5\r\n",
            "Repeated",
        ),
        (b"POST /call HTTP/1.1\r\nhost: x\r\ncontent-length: 5, 5\r\n", "Content-Length must be"),
        (
            b"POST /call HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n"
            b"transfer-encoding: chunked\r\n",
            "ambiguous",
        ),
        (b"POST /call HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip, chunked\r\n", "Unsupported"),
        (b"POST /call HTTP/1.0\r\ntransfer-encoding: chunked\r\n", "Unsupported"),
        (b"GET /health HTTP/1.1\nhost: x\n", "Malformed"),
        (b"GET /health HTTP/1.1\r\nhost : x\r\n", "Malformed header"),
        (b"GET /health HTTP/1.1\r\nhost: x\r\n folded\r\n", "Malformed header"),
        (b"GET /health HTTP/1.1\r\nhost: a\x00b\r\n", "Malformed header"),
        (b"GET /health HTTP/2.0\r\nhost: x\r\n", "Malformed request line"),
        (b"GET  /health HTTP/1.1\r\nhost: x\r\n", "Malformed request line"),
        (b"GET health HTTP/1.1\r\nhost: x\r\n", "must be a path"),
        (b"GET /health HTTP/1.1\r\n", "need a Host header"),
        (b"GET /health HTTP/1.1\r\nhost: x\r\nhost: y\r\n", "Repeated host"),
    ],
)
def test_malformed_requests_are_400_and_close(sock_path, head, fragment):
    answer = raw(sock_path, head + f"authorization: Bearer {TOKEN}\r\n\r\n".encode() + b"hello")
    ((status, headers, body),) = responses(answer)
    assert status == 400
    assert headers["connection"] == "close"
    error = json.loads(body)["error"]
    assert error["kind"] == "bad_request" and fragment in error["message"]


def test_bad_chunk_framing_is_400(sock_path):
    request = (
        f"POST /call HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\n"
        "transfer-encoding: chunked\r\n\r\n5\r\nabcdefgh\r\n0\r\n\r\n"
    ).encode()
    ((status, headers, _),) = responses(raw(sock_path, request))
    assert status == 400 and headers["connection"] == "close"


def test_huge_head_is_refused(sock_path):
    request = b"GET /health HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 40000 + b"\r\n\r\n"
    ((status, _, _),) = responses(raw(sock_path, request))
    assert status == 431


def test_http_1_0_closes_unless_keep_alive(sock_path):
    request = f"GET /health HTTP/1.0\r\nauthorization: Bearer {TOKEN}\r\n\r\n".encode()
    ((status, headers, _),) = responses(raw(sock_path, request, timeout=2))
    assert status == 200 and headers["connection"] == "close"


def test_head_has_no_body_and_absolute_form_is_accepted(sock_path):
    close = {"connection": "close"}
    request = request_bytes("HEAD", "/health") + request_bytes(
        "GET", "http://x/health", None, close
    )
    data = raw(sock_path, request)
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"content-length:" in head
    assert rest.startswith(b"HTTP/1.1 200")  # no body in between


def test_requests_can_arrive_byte_by_byte(sock_path):
    request = request_bytes("POST", "/call", CALL)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(sock_path)
        for byte in request:
            sock.send(bytes([byte]))
        assert sock.recv(1000).endswith(b'{"result":1}')


def test_stalled_head_is_dropped_after_the_header_timeout(serve):
    """A slowloris used to hold a connection (and, with enough of them, the server) forever."""
    server = serve(ENV, header_timeout=0.4)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(server.sock)
        sock.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n")  # and never the rest
        started = time.monotonic()
        data = sock.recv(1000)
        assert data.startswith(b"HTTP/1.1 408") and time.monotonic() - started < 3
        assert sock.recv(1000) == b""


def test_stalled_body_is_dropped_and_its_call_never_runs(serve):
    server = serve("CALLS = []\ndef touch():\n    CALLS.append(1)\n", header_timeout=0.4)
    body = json.dumps({"method": "touch"}).encode()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(server.sock)
        sock.sendall(request_bytes("POST", "/call", body)[:-5])
        assert sock.recv(1000).startswith(b"HTTP/1.1 408")
    import env

    assert env.CALLS == []


def test_idle_keep_alive_connection_is_closed_after_the_idle_timeout(serve):
    server = serve(ENV, idle_timeout=0.4, header_timeout=1.0)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(server.sock)
        sock.sendall(request_bytes("GET", "/health"))
        assert sock.recv(1000).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        assert sock.recv(1000) == b""  # closed by the server
        assert 0.3 < time.monotonic() - started < 3


def test_connection_cap_closes_idle_connections_first_then_refuses(serve):
    """5,000 idle connections used to exhaust the server's file descriptors."""
    server = serve(ENV, max_connections=20)
    idle = []
    try:
        for _ in range(40):  # twice the cap, all idle: the oldest make room for the newest
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(server.sock)
            idle.append(sock)
        time.sleep(0.2)
        assert server.server.open_connections <= 20
        assert server.client().get("/health").status_code == 200
        stalled = []
        for _ in range(20):  # requests in progress are never evicted
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(server.sock)
            sock.sendall(b"GET /health HTTP/1.1\r\n")
            stalled.append(sock)
        idle += stalled
        time.sleep(0.2)
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(server.sock)
            answer = sock.recv(1000)
        assert answer.startswith(b"HTTP/1.1 503") and b'"overloaded"' in answer
    finally:
        for sock in idle:
            sock.close()


def test_declared_oversized_body_is_refused_before_it_is_sent(serve):
    server = serve(ENV, max_body=1000)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(server.sock)
        sock.sendall(request_bytes("POST", "/call")[:-2] + b"content-length: 60000000\r\n\r\n")
        answer = sock.recv(1000)
    assert answer.startswith(b"HTTP/1.1 413") and b"RAYFINE_MAX_BODY_BYTES" in answer


def test_a_client_that_sends_its_whole_body_first_still_gets_the_refusal(serve):
    """Clients that write the whole request before reading (most do, Rayfine's included)
    must see 413 (or 401), not a reset connection."""
    server = serve(ENV, max_body=1000)
    client = server.client()
    response = client.post("/call", content=b"x" * (8 * 1024 * 1024))
    assert response.status_code == 413 and error_of(response)["kind"] == "too_large"
    response = server.client(token="wrong").post("/call", content=b"x" * (8 * 1024 * 1024))
    assert response.status_code == 401


def test_unauthenticated_and_malformed_requests_read_no_body(sock_path):
    for headers in ({}, {"authorization": "Bearer nope"}):
        request = b"POST /call HTTP/1.1\r\nhost: x\r\ncontent-length: 999999999\r\n"
        request += b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items()) + b"\r\n"
        assert raw(sock_path, request).startswith(b"HTTP/1.1 401")


def test_auth_header_values_are_never_echoed(sock_path):
    answer = raw(
        sock_path, b"GET /health HTTP/1.1\r\nhost: x\r\nauthorization: Bearer leak\r\n\r\n"
    )
    assert b"leak" not in answer


def test_query_strings_are_ignored_for_routing(sock_path):
    request = request_bytes("GET", "/health?verbose=1", headers={"connection": "close"})
    ((status, _, _),) = responses(raw(sock_path, request))
    assert status == 200


class _QuietHost:
    """Just enough of a server for one connection that is never served."""

    header_timeout, idle_timeout, max_body, shutting_down = 10.0, 75.0, 1 << 20, False

    def touch(self, connection):
        pass

    def forget(self, connection):
        pass

    def authorized(self, head):
        return False

    def refused(self, what, peer):
        pass

    async def handle(self, request):
        raise AssertionError("not served in this test")


def test_a_request_the_loop_has_not_read_yet_keeps_its_connection_from_eviction():
    """The kernel holds a request the event loop has not read: evicting that "idle"
    connection would reset a call the client already sent (seen under load in CI)."""
    import asyncio

    from rayfine_server.connection import HttpConnection

    async def main() -> tuple[bool, bool]:
        loop = asyncio.get_running_loop()
        pairs = [socket.socketpair(), socket.socketpair()]
        busy, idle = HttpConnection(_QuietHost()), HttpConnection(_QuietHost())
        try:
            await loop.connect_accepted_socket(lambda: busy, pairs[0][0])
            await loop.connect_accepted_socket(lambda: idle, pairs[1][0])
            assert busy.idle and idle.idle
            pairs[0][1].sendall(request_bytes("GET", "/health"))  # no await: still unread
            return busy.close_if_idle(), idle.close_if_idle()
        finally:
            busy.expire()  # closes it whatever it holds (not served here)
            for _, theirs in pairs:
                theirs.close()

    assert asyncio.run(main()) == (False, True)
