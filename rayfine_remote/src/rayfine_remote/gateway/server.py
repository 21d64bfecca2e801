"""The gateway's HTTP/1.1 server: httptools parsing, a direct path for forwarded calls, ASGI for the rest.

Why not uvicorn: measured on the 2-CPU development VM, a forwarded call
through the gateway on uvicorn cost about 300 µs more than the same call
straight over the Unix socket; a plain byte pipe in its place costs 70 µs.
The difference is per-request machinery: the ASGI cycle (a task, message
dicts, events), a head and a body written separately.  Here a forwarded
call is parsed by the same C parser uvicorn uses (httptools), handed to
:func:`~.proxy.exchange` directly, and answered in one write; a client that
hangs up cancels it at once (``connection_lost``), with no watcher task.
Every other route runs the gateway's ASGI application, as any ASGI server
would (the app still runs under uvicorn or another server too).

Limits against hostile clients: request heads over :data:`MAX_HEAD` bytes
(431), bodies over the gateway's cap (413, never read), heads that take
longer than :data:`HEAD_TIMEOUT` s (closed: slow-loris), idle keep-alive
connections after :data:`IDLE_TIMEOUT` s, more than :data:`MAX_CONNECTIONS`
connections (closed at once), upgrades and malformed requests (400, closed).
One request per connection is served at a time; pipelined ones wait.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import TYPE_CHECKING, Optional

import httptools

from . import proxy
from .asgi import Message

if TYPE_CHECKING:
    from .app import Gateway

log = logging.getLogger("rayfine.gateway")
MAX_HEAD = 64 * 1024
MAX_HEADERS = 100
HEAD_TIMEOUT = 30.0
BODY_TIMEOUT = 60.0
IDLE_TIMEOUT = 75.0
MAX_CONNECTIONS = 8192
HIGH_WATER = 1 << 20
"""Body bytes buffered for a handler before the connection stops reading."""
_REASONS = {
    200: b"OK", 201: b"Created", 400: b"Bad Request", 401: b"Unauthorized", 403: b"Forbidden",
    404: b"Not Found", 413: b"Payload Too Large", 422: b"Unprocessable Entity",
    429: b"Too Many Requests", 431: b"Request Header Fields Too Large", 500: b"Internal Server Error",
    502: b"Bad Gateway", 503: b"Service Unavailable",
}  # fmt: skip
PROXY_MARK = "/proxy"


class Server:
    """Connections of one listening socket, and the gateway they serve."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.connections: set[Connection] = set()
        self.closing = False

    def protocol(self) -> Connection:
        return Connection(self)

    def close_idle(self) -> None:
        """Close connections with no request in flight (shutting down)."""
        self.closing = True
        for connection in list(self.connections):
            connection.close_if_idle()

    async def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for the requests in flight to end, then close what is left."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.connections and asyncio.get_running_loop().time() < deadline:
            self.close_idle()
            await asyncio.sleep(0.05)
        for connection in list(self.connections):
            connection.abort()


class Request:
    """One request as parsed, its body (buffered or streamed to an ASGI handler) and its answer."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.url = bytearray()
        self.headers: list[tuple[bytes, bytes]] = []
        self.method = ""
        self.keep_alive = True
        self.body: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.complete = False
        self.arrived = asyncio.Event()
        self.started: Optional[tuple[int, list[tuple[bytes, bytes]]]] = None
        self.chunked = False
        self.finished = False
        self.body_read = False
        self.wrote = False
        """Some of its answer has been written."""
        self.limit = 0
        """Most body bytes that may wait unread (a forwarded call is read whole first)."""

    def header(self, name: bytes) -> Optional[bytes]:
        for key, value in self.headers:
            if key == name:
                return value
        return None


class Connection(asyncio.Protocol):
    """One client connection: parse, dispatch, answer, keep alive."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.gateway = server.gateway
        self.transport: Optional[asyncio.Transport] = None
        self.parser = httptools.HttpRequestParser(self)
        self.peer = "unix"
        self.queue: collections.deque[Request] = collections.deque()
        self.parsing: Optional[Request] = None
        self.head_bytes = 0
        self.task: Optional[asyncio.Task[None]] = None
        self.timer: Optional[asyncio.TimerHandle] = None
        self.lost = False
        self.refused = False
        self.writable = asyncio.Event()
        self.writable.set()

    # -- connection events ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport
        if len(self.server.connections) >= MAX_CONNECTIONS or self.server.closing:
            transport.close()
            return
        self.server.connections.add(self)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.peer = f"{peer[0]}:{peer[1]}"
        self._arm(IDLE_TIMEOUT)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.lost = True
        self.server.connections.discard(self)
        self._disarm()
        self.writable.set()
        for request in self.queue:
            request.arrived.set()  # an ASGI handler waiting for body sees the hang-up
        if self.task is not None and not self.task.done():
            self.task.cancel()  # the client left: closing the server's side cancels the call

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(400, b"Upgrades are not served.")
        except httptools.HttpParserError:  # also what a callback's _Refused becomes
            if not self.refused:
                self._refuse(400, b"Malformed request.")

    # -- httptools callbacks ----------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.parsing = Request(self)
        self.head_bytes = 0
        if not self.queue:
            self._arm(HEAD_TIMEOUT)

    def on_url(self, url: bytes) -> None:
        assert self.parsing is not None
        self._count(len(url))
        self.parsing.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.parsing is not None
        self._count(len(name) + len(value))
        if len(self.parsing.headers) >= MAX_HEADERS:
            self._refuse(431, b"Too many header fields.")
            raise _Refused
        self.parsing.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        request = self.parsing
        assert request is not None
        request.method = self.parser.get_method().decode("ascii", "replace")
        request.keep_alive = self.parser.should_keep_alive()
        if self.parser.should_upgrade():
            self._refuse(400, b"Upgrades are not served.")
            raise _Refused
        path = request.url.split(b"?", 1)[0]
        forwarded = path.startswith(b"/v1/envs/") and PROXY_MARK.encode() in path
        config = self.gateway.config
        request.limit = config.max_body_bytes if forwarded else config.max_context_bytes
        length = request.header(b"content-length")
        if length is not None and length.isdigit() and int(length) > request.limit:
            self._refuse(413, b"The request body is too large.")
            raise _Refused
        if request.header(b"expect") == b"100-continue" and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.queue.append(request)
        if len(self.queue) == 1:
            self._disarm()
            self._dispatch()

    def on_body(self, body: bytes) -> None:
        request = self.parsing
        assert request is not None
        request.body.append(body)
        request.buffered += len(body)
        request.arrived.set()
        if request.buffered > request.limit:
            self._refuse(413, b"The request body is too large.")
            raise _Refused
        if request.buffered > HIGH_WATER and self.transport is not None:
            self.transport.pause_reading()  # resumed as the handler reads

    def on_message_complete(self) -> None:
        request = self.parsing
        assert request is not None
        request.complete = True
        request.arrived.set()
        if self.transport is not None and len(self.queue) > 1:
            self.transport.pause_reading()  # pipelined: read on once the queue drains

    # -- dispatch ----------------------------------------------------------------------------------
    def _dispatch(self) -> None:
        request = self.queue[0]
        self.task = asyncio.ensure_future(self._serve(request))

    async def _serve(self, request: Request) -> None:
        try:
            path = request.url.split(b"?", 1)[0].decode("latin-1")
            if path.startswith("/v1/envs/") and PROXY_MARK in path:
                await self._forward(request, path)
            else:
                await self._asgi(request, path)
        except asyncio.CancelledError:
            return  # the client left
        except Exception:
            log.exception("rayfine gateway: a request failed")
        if not request.finished:
            self.abort()  # nothing (whole) was sent: the client sees the connection drop
            return
        self._finish(request)

    async def _forward(self, request: Request, path: str) -> None:
        client = self.gateway.authenticate(request.header(b"authorization"), self.peer)
        if client is None:
            self._answer(request, *proxy.unauthorized())
            return
        if not request.complete:  # usually it came with the head
            try:
                await asyncio.wait_for(self._whole_body(request), BODY_TIMEOUT)
            except asyncio.TimeoutError:
                return  # a body that does not come: the connection is dropped
        if self.lost:
            return
        env_id, _, rest = path[len("/v1/envs/") :].partition("/")
        if rest != "proxy" and not rest.startswith("proxy/"):
            self._answer(request, 404, b"application/json", proxy.no_route(request.method, path))
            return
        query = request.url.partition(b"?")[2]
        outcome = await proxy.exchange(
            self.gateway,
            client,
            env_id,
            rest[len("proxy") :] or "/",
            request.method,
            query.decode("latin-1"),
            request.header(b"x-rayfine-token"),
            b"".join(request.body),
        )
        if outcome is not None:
            self._answer(request, *outcome)

    async def _whole_body(self, request: Request) -> None:
        while not request.complete and not self.lost:
            request.arrived.clear()
            await request.arrived.wait()

    def _answer(self, request: Request, status: int, content_type: bytes, body: bytes) -> None:
        head = _head(status, request.keep_alive)
        head += b"content-type: %s\r\ncontent-length: %d\r\n\r\n" % (content_type, len(body))
        self._write(head + body)
        request.finished = request.wrote = True

    async def _asgi(self, request: Request, path: str) -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": request.method,
            "scheme": "https" if self._tls() else "http",
            "path": path,
            "raw_path": bytes(request.url.split(b"?", 1)[0]),
            "query_string": bytes(request.url.partition(b"?")[2]),
            "root_path": "",
            "headers": request.headers,
            "client": tuple(self.peer.rsplit(":", 1)) if self.peer != "unix" else None,
            "server": None,
        }

        async def receive() -> Message:
            return await self._receive(request)

        async def send(message: Message) -> None:
            await self._send(request, message)

        await self.gateway(scope, receive, send)

    async def _receive(self, request: Request) -> Message:
        """ASGI ``receive``: the body in pieces, then (once the answer is sent or the client left) disconnect."""
        if not request.body_read:
            while not request.body and not request.complete and not self.lost:
                request.arrived.clear()
                await request.arrived.wait()
            if self.lost:
                return {"type": "http.disconnect"}
            chunk = request.body.popleft() if request.body else b""
            request.buffered -= len(chunk)
            if request.buffered < HIGH_WATER and self.transport is not None:
                self.transport.resume_reading()
            more = bool(request.body) or not request.complete
            request.body_read = not more
            return {"type": "http.request", "body": chunk, "more_body": more}
        while not self.lost and not request.finished:
            request.arrived.clear()
            await request.arrived.wait()
        return {"type": "http.disconnect"}

    async def _send(self, request: Request, message: Message) -> None:
        if self.lost:
            return
        if message["type"] == "http.response.start":
            request.started = (int(message["status"]), list(message.get("headers", [])))
            return
        body: bytes = message.get("body", b"")
        more = bool(message.get("more_body"))
        out = b""
        if request.started is not None:
            status, headers = request.started
            request.started = None
            names = {k.lower() for k, _ in headers}
            out = _head(status, request.keep_alive)
            if b"content-length" not in names:
                if more:
                    request.chunked = True
                    headers = [*headers, (b"transfer-encoding", b"chunked")]
                else:
                    headers = [*headers, (b"content-length", b"%d" % len(body))]
            out += b"".join(b"%s: %s\r\n" % (k, v) for k, v in headers) + b"\r\n"
        if request.chunked:
            out += (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + (
                b"" if more else b"0\r\n\r\n"
            )
        else:
            out += body
        self._write(out)
        request.wrote = True
        if not more:
            request.finished = True
            request.arrived.set()  # a handler waiting in receive() learns the answer is out
        await self.writable.wait()

    # -- after a response ---------------------------------------------------------------------------
    def _finish(self, request: Request) -> None:
        self.queue.popleft()
        self.task = None
        if self.lost:
            return
        if not request.keep_alive or not request.complete or self.server.closing:
            self._close()
            return
        if self.transport is not None:
            self.transport.resume_reading()  # paused for a pipelined request, or a body
        if self.queue:
            self._dispatch()
            return
        self._arm(IDLE_TIMEOUT)

    def close_if_idle(self) -> None:
        """Shutting down: drop a connection with no request in flight (no TLS close handshake to wait for)."""
        if not self.queue:
            self.abort()

    # -- helpers ------------------------------------------------------------------------------------
    def _count(self, size: int) -> None:
        self.head_bytes += size
        if self.head_bytes > MAX_HEAD:
            self._refuse(431, b"The request head is too large.")
            raise _Refused

    def _refuse(self, status: int, message: bytes) -> None:
        """Answer an error (unless another answer is being written) and close the connection."""
        self.refused = True
        body = b'{"error":{"kind":"bad_request","type":"bad_request","message":"%s"}}' % message
        head = _head(status, False)
        head += b"content-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body)
        current = self.queue[0] if self.queue else None
        if current is None or (current is self.parsing and not current.wrote):
            self._write(head + body)  # nothing else is being answered on this connection
            if current is not None:
                current.finished = current.wrote = True
                if self.task is not None:
                    self.task.cancel()
        self._close()

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _close(self) -> None:
        self._disarm()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        self._disarm()
        if self.transport is not None:
            self.transport.abort()

    def _tls(self) -> bool:
        return (
            self.transport is not None and self.transport.get_extra_info("sslcontext") is not None
        )

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self.timer = asyncio.get_running_loop().call_later(seconds, self._close)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class _Refused(Exception):
    """The connection was answered with an error and closed; stop parsing."""


def _head(status: int, keep_alive: bool) -> bytes:
    reason = _REASONS.get(status, b"Unknown")
    connection = b"" if keep_alive else b"connection: close\r\n"
    return b"HTTP/1.1 %d %s\r\n%s" % (status, reason, connection)
