"""HTTP clients for one environment: a blocking one and an asyncio one.

Each keeps a pool of keep-alive connections to its container (a Unix socket
or a 127.0.0.1 port) and sends every request in one write.  Framing lives in
:mod:`rayfine_core.wire`, the call format and the error mapping in
:mod:`rayfine_core.protocol`; this module moves bytes and turns socket
errors into Rayfine's.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any, Mapping, Optional, Sequence

from . import errors
from .protocol import decode_result, encode_call
from .types import Endpoint
from .wire import ProtocolError, Response, ResponseParser, encode_request, fixed_headers

TIMEOUT_GRACE = 2.0
"""Extra seconds the client waits past a call's timeout for the server to report it."""
CONNECT_TIMEOUT = 10.0
KEEPALIVE_EXPIRY = 60.0
"""Idle connections older than this are closed (the server keeps them 75 s)."""
MAX_CONNECTIONS = 512
"""Per asyncio client: requests beyond this many in flight wait for a connection."""
_READ_SIZE = 256 * 1024


def _read_timeout(timeout: Optional[float]) -> Optional[float]:
    return None if timeout is None else timeout + TIMEOUT_GRACE


def _transport_error(exc: BaseException, what: str, endpoint: Endpoint) -> errors.RayfineError:
    if isinstance(exc, (TimeoutError, socket.timeout, asyncio.TimeoutError)):
        return errors.CallTimeout(f"{what} got no answer in time from {endpoint}")
    return errors.TransportError(
        f"{what} failed talking to {endpoint}: {type(exc).__name__}: {exc}"
    )


class _Base:
    def __init__(self, endpoint: Endpoint, token: Optional[str]) -> None:
        self.endpoint = endpoint
        self._headers = fixed_headers(
            "rayfine" if endpoint.unix_socket else f"{endpoint.host}:{endpoint.port}", token
        )

    def _encode(self, verb: str, path: str, body: Optional[bytes]) -> bytes:
        return encode_request(verb, path, self._headers, body)


class Client(_Base):
    """Blocking client; safe to share between threads (each request has a connection to itself)."""

    def __init__(self, endpoint: Endpoint, token: Optional[str] = None) -> None:
        super().__init__(endpoint, token)
        self._idle: list[tuple[socket.socket, float]] = []
        self._lock = threading.Lock()

    def get(self, path: str, timeout: float = 10.0) -> Response:
        return self.request("GET", path, None, timeout)

    def post(self, path: str, body: bytes, timeout: Optional[float]) -> Response:
        return self.request("POST", path, body, _read_timeout(timeout))

    def call(
        self, method: str, args: Sequence[Any], kwargs: Mapping[str, Any], timeout: Optional[float]
    ) -> Any:
        response = self.post("/call", encode_call(method, args, kwargs, timeout), timeout)
        return decode_result(response.status_code, response.content, method)

    def request(
        self, verb: str, path: str, body: Optional[bytes], timeout: Optional[float]
    ) -> Response:
        """Send one request and read its response; ``timeout`` bounds the wait for it."""
        parser = ResponseParser()
        sock: Optional[socket.socket] = None
        try:
            sock = self._acquire()
            sock.settimeout(timeout)
            sock.sendall(self._encode(verb, path, body))
            while not parser.complete:
                data = sock.recv(_READ_SIZE)
                parser.feed(data) if data else parser.feed_eof()
        except (OSError, ProtocolError) as exc:
            raise _transport_error(exc, f"{verb} {path}", self.endpoint) from exc
        finally:  # an interrupted exchange leaves the connection in an unknown state: drop it
            if sock is not None:
                self._release(sock) if parser.complete and parser.keep_alive else sock.close()
        return parser.response

    def _acquire(self) -> socket.socket:
        now = time.monotonic()
        with self._lock:
            while self._idle:
                sock, since = self._idle.pop()
                if now - since < KEEPALIVE_EXPIRY and _still_open(sock):
                    return sock
                sock.close()
        return self._connect()

    def _connect(self) -> socket.socket:
        if self.endpoint.unix_socket:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(CONNECT_TIMEOUT)
                sock.connect(self.endpoint.unix_socket)
            except BaseException:
                sock.close()
                raise
            return sock
        sock = socket.create_connection(
            (self.endpoint.host, self.endpoint.port), timeout=CONNECT_TIMEOUT
        )
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _release(self, sock: socket.socket) -> None:
        with self._lock:
            self._idle.append((sock, time.monotonic()))

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for sock, _ in idle:
            sock.close()


def _still_open(sock: socket.socket) -> bool:
    """An idle keep-alive connection is readable only if the server closed it (or misbehaved)."""
    sock.setblocking(False)  # a socket with a timeout would wait for data first
    try:
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


class AsyncClient(_Base):
    """Asyncio client; create it on the event loop that will use it."""

    def __init__(self, endpoint: Endpoint, token: Optional[str] = None) -> None:
        super().__init__(endpoint, token)
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)

    async def get(self, path: str, timeout: float = 10.0) -> Response:
        return await self.request("GET", path, None, timeout)

    async def post(self, path: str, body: bytes, timeout: Optional[float]) -> Response:
        return await self.request("POST", path, body, _read_timeout(timeout))

    async def call(
        self, method: str, args: Sequence[Any], kwargs: Mapping[str, Any], timeout: Optional[float]
    ) -> Any:
        response = await self.post("/call", encode_call(method, args, kwargs, timeout), timeout)
        return decode_result(response.status_code, response.content, method)

    async def request(
        self, verb: str, path: str, body: Optional[bytes], timeout: Optional[float]
    ) -> Response:
        """Send one request and await its response; ``timeout`` bounds the wait for it."""
        async with self._slots:
            connection: Optional[_Connection] = None
            try:
                connection = await self._acquire()
                return await connection.exchange(self._encode(verb, path, body), timeout)
            except (OSError, ProtocolError, asyncio.TimeoutError) as exc:
                raise _transport_error(exc, f"{verb} {path}", self.endpoint) from exc
            finally:  # cancelled or failed mid-exchange: the connection's state is unknown
                if connection is not None:
                    self._idle.append(connection) if connection.reusable else connection.close()

    async def _acquire(self) -> "_Connection":
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()
            if now - connection.since < KEEPALIVE_EXPIRY and connection.reusable:
                return connection
            connection.close()
        loop = asyncio.get_running_loop()
        if self.endpoint.unix_socket:
            sock = await _connect_unix(self.endpoint.unix_socket, CONNECT_TIMEOUT)
            opening = loop.create_unix_connection(_Connection, sock=sock)
        else:
            assert self.endpoint.port is not None, "a TCP endpoint has a port"
            opening = loop.create_connection(_Connection, self.endpoint.host, self.endpoint.port)
        _, connection = await asyncio.wait_for(opening, CONNECT_TIMEOUT)
        return connection

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


async def _connect_unix(path: str, timeout: float) -> socket.socket:
    """A connected non-blocking Unix socket.

    When the server's accept backlog is full, ``connect`` on a Unix socket
    fails at once with EAGAIN instead of going "in progress" as TCP does,
    and asyncio's own connect would then wait for an event that never
    comes; so the connect is retried here, with a short backoff, until
    ``timeout``.
    """
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(path)
            return sock
        except BlockingIOError:
            sock.close()
            if time.monotonic() + delay > deadline:
                raise TimeoutError(
                    f"the server's accept backlog stayed full for {timeout:g}s"
                ) from None
        except BaseException:
            sock.close()
            raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)


class _Connection(asyncio.Protocol):
    """One keep-alive connection; a response is parsed as its bytes arrive."""

    def __init__(self) -> None:
        self._transport: Optional[asyncio.Transport] = None
        self._parser: Optional[ResponseParser] = None
        self._waiter: Optional[asyncio.Future[Response]] = None
        self._open = True
        self.since = time.monotonic()

    @property
    def reusable(self) -> bool:
        """Open, idle, and the last response left it fit for another request."""
        parser = self._parser
        return (
            self._open
            and self._waiter is None
            and (parser is None or (parser.complete and parser.keep_alive))
        )

    async def exchange(self, request: bytes, timeout: Optional[float]) -> Response:
        assert self._transport is not None
        self._parser = ResponseParser()
        self._waiter = waiter = asyncio.get_running_loop().create_future()
        self._transport.write(request)
        try:
            return await (waiter if timeout is None else asyncio.wait_for(waiter, timeout))
        finally:
            self._waiter = None
            self.since = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._parser is None or self._waiter is None:
            self.close()  # bytes nobody asked for
            return
        try:
            if self._parser.feed(data):
                self._settle(None)
        except ProtocolError as exc:
            self._settle(exc)

    def eof_received(self) -> bool:
        self._open = False
        if self._parser is not None and self._waiter is not None:
            try:
                self._parser.feed_eof()
                self._settle(None)
            except ProtocolError as exc:
                self._settle(exc)
        return False  # close the transport

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._open = False
        self._settle(exc or ProtocolError("the server closed the connection"))

    def _settle(self, error: Optional[BaseException]) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if error is None:
            assert self._parser is not None
            waiter.set_result(self._parser.response)
        else:
            waiter.set_exception(error)

    def close(self) -> None:
        self._open = False
        if self._transport is not None:
            self._transport.close()
