"""The HTTP/1.1 framing and the two clients, against a scripted local server (no engine)."""

from __future__ import annotations

import asyncio
import json
import socketserver
import tempfile
import threading
import time
from pathlib import Path

import pytest

from rayfine_core import errors
from rayfine_core.runtime.types import Endpoint
from rayfine_core.transport.client import AsyncClient, Client
from rayfine_core.transport.wire import ProtocolError, ResponseParser, encode_request, fixed_headers

OK = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 12\r\n\r\n{"result":1}'
CHUNKED = (
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
    b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: 1\r\n\r\n"
)


def parse_in_pieces(raw: bytes, size: int) -> ResponseParser:
    parser = ResponseParser()
    for i in range(0, len(raw), size):
        if parser.feed(raw[i : i + size]):
            break
    return parser


@pytest.mark.parametrize("size", [1, 2, 7, 1000])
def test_content_length_and_chunked_in_any_pieces(size):
    ok = parse_in_pieces(OK, size)
    assert ok.complete and ok.keep_alive and ok.response.json() == {"result": 1}
    assert ok.response.headers["content-type"] == "application/json"
    chunked = parse_in_pieces(CHUNKED, size)
    assert chunked.complete and chunked.response.content == b"hello world"


def test_body_until_close_and_connection_close():
    parser = ResponseParser()
    assert not parser.feed(b"HTTP/1.1 200 OK\r\n\r\npart one, ")
    assert not parser.feed(b"part two")
    assert (
        parser.feed_eof()
        and parser.response.content == b"part one, part two"
        and not parser.keep_alive
    )
    closing = ResponseParser()
    assert closing.feed(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
    assert not closing.keep_alive and closing.response.status_code == 204
    old = ResponseParser()
    assert old.feed(b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n") and not old.keep_alive


@pytest.mark.parametrize(
    "raw",
    [
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 2x0 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: ten\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_garbage_is_a_protocol_error(raw):
    with pytest.raises(ProtocolError):
        ResponseParser().feed(raw)


def test_cut_short_is_a_protocol_error():
    parser = ResponseParser()
    parser.feed(OK[:-3])
    with pytest.raises(ProtocolError, match="before the response was complete"):
        parser.feed_eof()


def test_large_body_in_pieces_and_bytes_after_the_response():
    body = bytes(range(256)) * 4096  # 1 MiB
    raw = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body
    parser = parse_in_pieces(raw, 65536)
    assert parser.complete and parser.keep_alive and parser.response.content == body
    late = ResponseParser()
    assert late.feed(OK) and late.keep_alive
    assert late.feed(b"HTTP/1.1 200 OK") and not late.keep_alive  # unasked-for bytes: do not reuse


@pytest.mark.parametrize(
    "host, token", [("rayfine", "a\r\nx-evil: 1"), ("a\nb", None), ("h", "t\x00"), ("h", "a\rb")]
)
def test_header_injection_through_host_or_token_is_refused(host, token):
    with pytest.raises(ValueError, match="line breaks"):
        fixed_headers(host, token)


def test_request_is_one_write_with_length():
    raw = encode_request("POST", "/call", fixed_headers("rayfine", "tok"), b"{}")
    assert raw.startswith(b"POST /call HTTP/1.1\r\n") and raw.endswith(b"\r\n\r\n{}")
    assert b"content-length: 2\r\n" in raw and b"authorization: Bearer tok\r\n" in raw


# -- the clients, against a scripted server on a Unix socket ----------------------------


class Script(socketserver.StreamRequestHandler):
    """Answers by path: /ok, /chunked, /close (then closes), /slow, /drop (closes, no answer)."""

    def handle(self) -> None:
        self.server.connections += 1  # type: ignore[attr-defined]
        while True:
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                byte = self.rfile.read(1)
                if not byte:
                    return
                head += byte
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                ),
                0,
            )
            self.rfile.read(length)
            path = head.split(b" ")[1]
            if path == b"/drop":
                return
            if path == b"/slow":
                time.sleep(1.0)
            if path == b"/trickle":  # a byte at a time: each read is quick, the whole is not
                head = b"HTTP/1.1 200 OK\r\ncontent-length: 40\r\n\r\n" + b"x" * 40
                for i in range(len(head)):
                    self.wfile.write(head[i : i + 1])
                    self.wfile.flush()
                    time.sleep(0.05)
                continue
            if path == b"/huge":
                self.wfile.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5000000\r\n\r\n")
                self.wfile.write(b"x" * 5_000_000)
                continue
            body = json.dumps({"connections": self.server.connections}).encode()  # type: ignore[attr-defined]
            if path == b"/chunked":
                self.wfile.write(
                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n"
                    % (len(body), body)
                )
                continue
            close = path == b"/close"
            self.wfile.write(
                b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n%s"
                % (len(body), b"connection: close\r\n" if close else b"", body)
            )
            if close:
                return


class ScriptServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    connections = 0

    def handle_error(self, request, client_address):  # a client hanging up early is the test
        pass


@pytest.fixture
def endpoint():
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "s.sock")
        server = ScriptServer(path, Script)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield Endpoint(unix_socket=path)
        finally:
            server.shutdown()
            server.server_close()


def test_blocking_client_reuses_reconnects_and_times_out(endpoint):
    client = Client(endpoint)
    assert client.request("GET", "/ok").json() == {"connections": 1}
    assert client.request("POST", "/chunked", b"{}").json() == {"connections": 1}  # same one
    assert client.request("GET", "/close").json() == {"connections": 1}
    assert client.request("GET", "/ok").json() == {
        "connections": 2
    }  # the closed one was not reused
    with pytest.raises(errors.CallTimeout):
        client.request("GET", "/slow", timeout=0.2)
    with pytest.raises(errors.TransportError, match="before the response was complete") as info:
        client.request("GET", "/drop")
    assert not info.value.connect_failed
    assert client.request("GET", "/ok").status_code == 200
    client.close()
    with pytest.raises(errors.TransportError) as info:
        Client(Endpoint(unix_socket=endpoint.unix_socket + ".missing")).request("GET", "/ok")
    assert info.value.connect_failed


def test_blocking_timeout_is_a_total_deadline(endpoint):
    started = time.monotonic()
    with pytest.raises(errors.CallTimeout):
        Client(endpoint).request("GET", "/trickle", timeout=0.5)
    assert time.monotonic() - started < 1.5  # the trickle alone would take ~4 s


def test_response_size_cap(endpoint):
    with pytest.raises(errors.ResponseTooLargeError, match="larger than 1048576 bytes"):
        Client(endpoint, max_response=1 << 20).request("GET", "/huge")

    async def main():
        client = AsyncClient(endpoint, max_response=1 << 20)
        with pytest.raises(errors.ResponseTooLargeError):
            await client.request("GET", "/huge")
        assert (await client.request("GET", "/ok")).status_code == 200

    asyncio.run(main())


def test_watch_runs_while_the_answer_is_late_and_may_end_the_wait(endpoint, monkeypatch):
    from rayfine_core.transport import client as client_module

    monkeypatch.setattr(client_module, "WATCH_EVERY", 0.1)
    calls: list[float] = []

    def watch():
        calls.append(time.monotonic())
        if len(calls) >= 3:
            raise errors.ContainerDiedError("gone", 3, False)

    with pytest.raises(errors.ContainerDiedError):
        Client(endpoint).request("GET", "/slow", watch=watch)
    assert len(calls) == 3

    async def main():
        acalls: list[int] = []

        async def awatch():
            acalls.append(1)
            if len(acalls) >= 2:
                raise errors.ContainerDiedError("gone", 3, False)

        with pytest.raises(errors.ContainerDiedError):
            await AsyncClient(endpoint).request("GET", "/slow", watch=awatch)
        return len(acalls)

    assert asyncio.run(main()) == 2


def test_asyncio_client_many_in_flight_and_after_cancel(endpoint):
    async def main():
        client = AsyncClient(endpoint)
        requests = (client.request("POST", "/ok", b"{}") for _ in range(50))
        results = await asyncio.gather(*requests)
        assert all(r.status_code == 200 for r in results)
        assert (await client.request("GET", "/chunked")).status_code == 200
        slow = asyncio.ensure_future(client.request("GET", "/slow"))
        await asyncio.sleep(0.1)
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        with pytest.raises(errors.CallTimeout):
            await client.request("GET", "/slow", timeout=0.2)
        with pytest.raises(errors.TransportError):
            await client.request("GET", "/drop")
        assert (await client.request("GET", "/ok")).status_code == 200
        await client.aclose()

    asyncio.run(main())
