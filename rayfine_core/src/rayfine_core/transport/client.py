"""HTTP clients for one endpoint: a blocking one and an asyncio one.

Each keeps a pool of keep-alive connections to its server (a Unix socket,
a TCP port, or TLS) and sends every request in one write.  Framing lives in
:mod:`~rayfine_core.transport.wire`; this module moves bytes, enforces the
deadline and the response-size cap, and turns socket errors into
Rayfine's.  A request may carry a *watch*: a function called every
:data:`WATCH_EVERY` seconds while the answer is late, which may raise to
end the wait (the environment checks its container there).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import select
import socket
import ssl
import stat
import threading
import time
from typing import Awaitable, Callable, Iterator, Optional

from .. import errors
from ..runtime.types import Endpoint, TLSConfig
from .wire import ProtocolError, Response, ResponseParser, encode_request

CONNECT_TIMEOUT = 10.0
KEEPALIVE_EXPIRY = 60.0
"""Idle connections older than this are closed (the server keeps them 75 s)."""
MAX_CONNECTIONS = 512
"""Per asyncio client: requests beyond this many in flight wait for a connection."""
WATCH_EVERY = 5.0
"""Seconds between calls of a request's watch while its answer is late."""
DEFAULT_MAX_RESPONSE = 128 * 1024 * 1024
_READ_SIZE = 256 * 1024


def max_response_bytes() -> int:
    """``RAYFINE_MAX_RESPONSE_BYTES``: the largest response body a client accepts."""
    raw = os.environ.get("RAYFINE_MAX_RESPONSE_BYTES", "").strip()
    if not raw:
        return DEFAULT_MAX_RESPONSE
    if not raw.isdigit() or int(raw) < 1024:
        raise errors.ValidationError(
            f"RAYFINE_MAX_RESPONSE_BYTES must be a whole number >= 1024, got {raw!r}."
        )
    return int(raw)


def _headers(endpoint: Endpoint, token: Optional[str]) -> bytes:
    """The header lines sent with every request, encoded once per client."""
    host = "rayfine" if endpoint.unix_socket else f"{endpoint.host}:{endpoint.port}"
    lines = [("host", host), *endpoint.headers]
    if token:
        proxied = any(name.lower() == "authorization" for name, _ in endpoint.headers)
        lines.append(
            ("x-rayfine-token", token) if proxied else ("authorization", f"Bearer {token}")
        )
    return "".join(f"{name}: {value}\r\n" for name, value in lines).encode("latin-1")


def _ssl_context(tls: TLSConfig) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=tls.ca_file, cadata=tls.ca_data)
    if tls.cert_file:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.pin_sha256 or not tls.verify:  # a pinned certificate is checked after the handshake
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _check_pin(tls: Optional[TLSConfig], certificate: Optional[bytes]) -> None:
    if tls is None or not tls.pin_sha256:
        return
    seen = hashlib.sha256(certificate or b"").hexdigest()
    if seen != tls.pin_sha256.lower().replace(":", ""):
        raise ssl.SSLError(f"the server's certificate (sha256 {seen}) is not the pinned one")


class _Base:
    def __init__(self, endpoint: Endpoint, token: Optional[str], max_response: Optional[int]):
        self.endpoint = endpoint
        self._headers = _headers(endpoint, token)
        self._prefix = endpoint.path_prefix.rstrip("/")
        self._max_response = max_response or max_response_bytes()
        self._ssl = (
            _ssl_context(endpoint.tls) if endpoint.scheme == "https" and endpoint.tls else None
        )
        if endpoint.scheme == "https" and self._ssl is None:
            self._ssl = ssl.create_default_context()

    def _encode(self, verb: str, path: str, body: Optional[bytes]) -> bytes:
        return encode_request(verb, self._prefix + path, self._headers, body)

    def _check_size(self, received: int) -> None:
        if received > self._max_response:
            raise errors.ResponseTooLargeError(
                f"The answer from {self.endpoint} is larger than {self._max_response} bytes;"
                " return less, or raise RAYFINE_MAX_RESPONSE_BYTES."
            )

    def _error(self, exc: BaseException, what: str) -> errors.RayfineError:
        if isinstance(exc, errors.RayfineError):
            return exc
        if isinstance(exc, (TimeoutError, socket.timeout, asyncio.TimeoutError)):
            return errors.CallTimeout(f"{what} got no answer in time from {self.endpoint}")
        return errors.TransportError(
            f"{what} failed talking to {self.endpoint}: {type(exc).__name__}: {exc}",
            connect_failed=isinstance(exc, _ConnectFailed),
        )


class _ConnectFailed(OSError):
    """Connecting failed: nothing listens there (or it vanished)."""


class Client(_Base):
    """Blocking client; safe to share between threads (each request has a connection to itself)."""

    def __init__(
        self, endpoint: Endpoint, token: Optional[str] = None, max_response: Optional[int] = None
    ) -> None:
        super().__init__(endpoint, token, max_response)
        self._idle: list[tuple[socket.socket, float]] = []
        self._lock = threading.RLock()  # close() may run in a signal handler

    def request(
        self,
        verb: str,
        path: str,
        body: Optional[bytes] = None,
        timeout: Optional[float] = None,
        watch: Optional[Callable[[], None]] = None,
    ) -> Response:
        """Send one request and read its response.

        :param timeout: total seconds for the whole exchange (None: no limit).
        :param watch: called every :data:`WATCH_EVERY` s while the answer is late; may raise.
        :raises CallTimeout: no complete answer within ``timeout``.
        :raises TransportError: the connection failed (``connect_failed`` tells if it never opened).
        :raises ResponseTooLargeError: the answer exceeds the size cap.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        parser = ResponseParser()
        sock: Optional[socket.socket] = None
        try:
            sock = self._acquire(deadline)
            sock.settimeout(_remaining(deadline))
            sock.sendall(self._encode(verb, path, body))
            received = 0
            while not parser.complete:
                data = self._recv(sock, deadline, watch)
                received += len(data)
                self._check_size(received)
                parser.feed(data) if data else parser.feed_eof()
        except (OSError, ProtocolError, errors.RayfineError) as exc:
            raise self._error(exc, f"{verb} {path}") from exc
        finally:  # an interrupted exchange leaves the connection in an unknown state: drop it
            if sock is not None:
                self._release(sock) if parser.complete and parser.keep_alive else sock.close()
        return parser.response

    def _recv(
        self, sock: socket.socket, deadline: Optional[float], watch: Optional[Callable[[], None]]
    ) -> bytes:
        while True:
            remaining = _remaining(deadline)
            sock.settimeout(
                remaining if watch is None else min(remaining or WATCH_EVERY, WATCH_EVERY)
            )
            try:
                return sock.recv(_READ_SIZE)
            except socket.timeout:
                if watch is None or (deadline is not None and time.monotonic() >= deadline):
                    raise
                watch()

    def _acquire(self, deadline: Optional[float]) -> socket.socket:
        now = time.monotonic()
        with self._lock:
            while self._idle:
                sock, since = self._idle.pop()
                if now - since < KEEPALIVE_EXPIRY and _still_open(sock):
                    return sock
                sock.close()
        return self._connect(deadline)

    def _connect(self, deadline: Optional[float]) -> socket.socket:
        limit = min(CONNECT_TIMEOUT, _remaining(deadline) or CONNECT_TIMEOUT)
        if self.endpoint.unix_socket:
            return _connect_unix_blocking(self.endpoint.unix_socket, limit)
        try:
            sock = socket.create_connection((self.endpoint.host, self.endpoint.port), timeout=limit)
        except (ConnectionRefusedError, FileNotFoundError) as exc:
            raise _ConnectFailed(exc.errno, str(exc)) from exc
        _tune_tcp(sock)
        if self._ssl is None:
            return sock
        tls = self.endpoint.tls
        hostname = (tls.server_hostname if tls else None) or self.endpoint.host
        wrapped = self._ssl.wrap_socket(sock, server_hostname=hostname)
        _check_pin(tls, wrapped.getpeercert(binary_form=True))
        return wrapped

    def _release(self, sock: socket.socket) -> None:
        with self._lock:
            self._idle.append((sock, time.monotonic()))

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for sock, _ in idle:
            sock.close()


def _tune_tcp(sock: socket.socket) -> None:
    """No Nagle delay; keepalive probes, so a peer that vanished (a lost node sends no FIN)
    ends a call without a timeout in about 11 s instead of never."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (("TCP_KEEPIDLE", 5), ("TCP_KEEPINTVL", 2), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


def _remaining(deadline: Optional[float]) -> Optional[float]:
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise socket.timeout("deadline reached")
    return left


@contextlib.contextmanager
def _no_links(path: str) -> Iterator[str]:
    """A name for the socket at ``path`` that no link can redirect: ``/proc/self/fd/N``.

    The socket's directory is writable by the container, which could put a
    link there to another socket of this host (the engine's, say); the
    socket is opened without following links and checked to be one, and the
    connect goes through that descriptor.
    """
    if not hasattr(os, "O_PATH"):  # not Linux: the best a path allows
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise _ConnectFailed(errno.ENOTSOCK, f"{path} is not a socket")
        yield path
        return
    try:
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise _ConnectFailed(exc.errno, str(exc)) from exc
    try:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            raise _ConnectFailed(errno.ENOTSOCK, f"{path} is not a socket (a link or a file)")
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def _connect_unix_blocking(path: str, timeout: float) -> socket.socket:
    """Connect to a Unix socket, retrying while the server's accept backlog is full (EAGAIN)."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            with _no_links(path) as target:
                sock.connect(target)
            return sock
        except BlockingIOError:
            sock.close()
            if time.monotonic() + delay > deadline:
                raise socket.timeout(
                    f"the server's accept backlog stayed full for {timeout:g}s"
                ) from None
        except (ConnectionRefusedError, FileNotFoundError) as exc:
            sock.close()
            raise _ConnectFailed(exc.errno, str(exc)) from exc
        except _ConnectFailed:
            sock.close()
            raise
        except OSError as exc:
            sock.close()
            if exc.errno != errno.EAGAIN or time.monotonic() + delay > deadline:
                raise
        except BaseException:
            sock.close()
            raise
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _still_open(sock: socket.socket) -> bool:
    """An idle keep-alive connection is readable only if the server closed it (or misbehaved)."""
    if isinstance(sock, ssl.SSLSocket):  # TLS sockets refuse MSG_PEEK: ask select instead
        readable, _, _ = select.select([sock], [], [], 0)
        return not readable and not sock.pending()
    sock.setblocking(False)  # a socket with a timeout would wait for data first
    try:
        sock.recv(1, socket.MSG_PEEK)
    except (BlockingIOError, ssl.SSLWantReadError):
        return True
    except OSError:
        return False
    return False


AsyncWatch = Callable[[], Awaitable[None]]


class AsyncClient(_Base):
    """Asyncio client; create it on the event loop that will use it."""

    def __init__(
        self, endpoint: Endpoint, token: Optional[str] = None, max_response: Optional[int] = None
    ) -> None:
        super().__init__(endpoint, token, max_response)
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)

    async def request(
        self,
        verb: str,
        path: str,
        body: Optional[bytes] = None,
        timeout: Optional[float] = None,
        watch: Optional[AsyncWatch] = None,
    ) -> Response:
        """Send one request and await its response (see :meth:`Client.request`)."""
        async with self._slots:
            connection: Optional[_Connection] = None
            try:
                connection = await self._acquire()
                request = self._encode(verb, path, body)
                return await connection.exchange(request, timeout, watch, self._max_response)
            except (OSError, ProtocolError, asyncio.TimeoutError, errors.RayfineError) as exc:
                raise self._error(exc, f"{verb} {path}") from exc
            finally:  # cancelled or failed mid-exchange: the connection's state is unknown
                if connection is not None:
                    self._idle.append(connection) if connection.reusable else connection.close()

    async def _acquire(self) -> _Connection:
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
            tls = self.endpoint.tls
            hostname = (tls.server_hostname if tls else None) or self.endpoint.host
            assert self.endpoint.port is not None, "a TCP endpoint has a port"
            opening = loop.create_connection(
                _Connection,
                self.endpoint.host,
                self.endpoint.port,
                ssl=self._ssl,
                server_hostname=hostname if self._ssl else None,
            )
        try:
            transport, connection = await asyncio.wait_for(opening, CONNECT_TIMEOUT)
        except (ConnectionRefusedError, FileNotFoundError) as exc:
            raise _ConnectFailed(exc.errno, str(exc)) from exc
        raw = transport.get_extra_info("socket")
        if raw is not None and raw.family in (socket.AF_INET, socket.AF_INET6):
            _tune_tcp(raw)
        if self._ssl is not None:
            ssl_object = transport.get_extra_info("ssl_object")
            try:
                _check_pin(tls, ssl_object.getpeercert(binary_form=True) if ssl_object else None)
            except ssl.SSLError:
                transport.close()
                raise
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
            with _no_links(path) as target:
                sock.connect(target)
            return sock
        except BlockingIOError:
            sock.close()
            if time.monotonic() + delay > deadline:
                raise TimeoutError(
                    f"the server's accept backlog stayed full for {timeout:g}s"
                ) from None
        except (ConnectionRefusedError, FileNotFoundError) as exc:
            sock.close()
            raise _ConnectFailed(exc.errno, str(exc)) from exc
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
        self._received = 0
        self._limit = DEFAULT_MAX_RESPONSE
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

    async def exchange(
        self, request: bytes, timeout: Optional[float], watch: Optional[AsyncWatch], limit: int
    ) -> Response:
        assert self._transport is not None
        loop = asyncio.get_running_loop()
        self._parser, self._received, self._limit = ResponseParser(), 0, limit
        if self._transport.is_closing():  # closed under us (uvloop would raise on write)
            self._open = False
            raise ProtocolError("the server closed the connection")
        self._waiter = waiter = loop.create_future()
        self._transport.write(request)
        timer = _Timer(loop, waiter, timeout, watch) if timeout is not None or watch else None
        try:
            return await waiter
        finally:
            if timer is not None:
                timer.cancel()
            self._waiter = None
            self.since = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._parser is None or self._waiter is None:
            self.close()  # bytes nobody asked for
            return
        self._received += len(data)
        if self._received > self._limit:
            self._settle(
                errors.ResponseTooLargeError(
                    f"The answer is larger than {self._limit} bytes;"
                    " return less, or raise RAYFINE_MAX_RESPONSE_BYTES."
                )
            )
            self.close()
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


class _Timer:
    """Ends a wait at its deadline, and runs its watch every WATCH_EVERY s meanwhile."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        waiter: asyncio.Future[Response],
        timeout: Optional[float],
        watch: Optional[AsyncWatch],
    ) -> None:
        self._loop, self._waiter, self._watch = loop, waiter, watch
        self._deadline = None if timeout is None else loop.time() + timeout
        self._task: Optional[asyncio.Task[None]] = None
        self._handle = self._schedule()

    def _schedule(self) -> asyncio.TimerHandle:
        now = self._loop.time()
        at = now + WATCH_EVERY if self._watch else float("inf")
        if self._deadline is not None:
            at = min(at, self._deadline)
        return self._loop.call_at(at, self._fire)

    def _fire(self) -> None:
        if self._waiter.done():
            return
        if self._deadline is not None and self._loop.time() >= self._deadline:
            self._waiter.set_exception(asyncio.TimeoutError())
            return
        if self._watch is not None and self._task is None:
            self._task = self._loop.create_task(self._run_watch())
        self._handle = self._schedule()

    async def _run_watch(self) -> None:
        assert self._watch is not None
        try:
            await self._watch()
        except BaseException as exc:  # the watch decided the wait is over
            if not self._waiter.done() and not isinstance(exc, asyncio.CancelledError):
                self._waiter.set_exception(exc)
        finally:
            self._task = None

    def cancel(self) -> None:
        self._handle.cancel()
        if self._task is not None:
            self._task.cancel()
