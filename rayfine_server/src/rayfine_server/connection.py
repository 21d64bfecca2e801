"""One client connection: read requests, hand them to the app, write the answers.

HTTP/1.1 with keep-alive, one request at a time per connection (pipelined
requests wait in the buffer).  The socket is read while a request runs, so a
client that goes away is noticed at once and its call is cancelled.  Timeouts
are not timers: the connection keeps a :attr:`HttpConnection.deadline` that
the server's sweeper checks once a second, which costs a request nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Optional, Protocol, Union

from .errors import BAD_REQUEST, INTERNAL_ERROR, OVERLOADED, TOO_LARGE, UNAUTHORIZED, CallError
from .httpparse import MAX_HEAD_BYTES, HttpError, RequestHead, parse_head
from .request import DISCONNECTED, SHUTDOWN, Request, RequestBody
from .responses import CONTINUE, Response, StreamResponse, Tunnel

logger = logging.getLogger(__name__)

AnyResponse = Union[Response, StreamResponse]
_IDLE, _HEAD, _BUSY, _TUNNEL, _LINGER, _CLOSED = range(6)
_PIPELINE_LIMIT = 2 * MAX_HEAD_BYTES
LINGER_SECONDS = 2.0
"""After refusing a request, input is read and dropped until the client closes, or until it
sends nothing for this long: closing a socket with unread input resets it, and a client
that sends its whole body before reading would lose the refusal."""
_LINGER_BYTES = 1024 * 1024
"""Dropped at most after a refusal, beyond the body the client declared."""
_LINGER_MAX = 1024 * 1024 * 1024


class Host(Protocol):
    """What a connection needs from the server that accepted it."""

    header_timeout: float
    idle_timeout: float
    max_body: int
    shutting_down: bool

    def touch(self, connection: HttpConnection) -> None: ...

    def forget(self, connection: HttpConnection) -> None: ...

    def authorized(self, head: RequestHead) -> bool: ...

    def refused(self, what: str, peer: str) -> None: ...

    async def handle(self, request: Request) -> AnyResponse: ...


class HttpConnection(asyncio.Protocol):
    """Serves the requests of one connection, one after another.

    :param host: the server this connection belongs to.
    """

    def __init__(self, host: Host) -> None:
        self._host = host
        self._loop = asyncio.get_running_loop()
        self._transport: Optional[asyncio.Transport] = None
        self._buffer = bytearray()
        self._state = _IDLE
        self._request: Optional[Request] = None
        self._reading_paused = False
        self._linger_left = 0
        self._tunnel: Optional[Tunnel] = None
        self._writable: Optional[asyncio.Future[None]] = None
        self.peer = "unix"
        self.deadline: Optional[float] = None
        """Loop time after which the sweeper closes this connection; ``None``: no limit."""

    # --- asyncio callbacks ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        if self._state == _CLOSED:  # evicted to make room before it was even set up
            transport.close()
            return
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.peer = str(peer[0])
        self.deadline = self._loop.time() + self._host.header_timeout

    def data_received(self, data: bytes) -> None:
        if self._state >= _LINGER:
            self._drain(len(data))
            return
        if self._state == _TUNNEL and self._tunnel is not None:
            self._tunnel.send(data)
            return
        self._buffer += data
        if self._state == _BUSY:
            self._while_busy()
        elif self._state != _CLOSED:
            self._read_head()

    def eof_received(self) -> Optional[bool]:
        return False  # close; a half-closed client is treated as gone

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._state = _CLOSED
        self._host.forget(self)
        request = self._request
        if request is not None:
            request.body.fail(ConnectionResetError("the client closed the connection"))
            request.cancel(DISCONNECTED)
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        if self._tunnel is not None:
            self._tunnel.close()

    def pause_writing(self) -> None:
        self._writable = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    # --- reading ----------------------------------------------------------------------

    def _read_head(self) -> None:
        buffer = self._buffer
        while buffer[:2] == b"\r\n":  # stray line ends between requests are allowed
            del buffer[:2]
        end = buffer.find(b"\r\n\r\n", 0, MAX_HEAD_BYTES + 4)
        if end < 0 or end > MAX_HEAD_BYTES:
            if len(buffer) > MAX_HEAD_BYTES:
                self._refuse(431, BAD_REQUEST, f"Request head exceeds {MAX_HEAD_BYTES} bytes")
            elif buffer and self._state == _IDLE:
                self._state = _HEAD
                self.deadline = self._loop.time() + self._host.header_timeout
            return
        raw = bytes(buffer[:end])
        del buffer[: end + 4]
        try:
            head = parse_head(raw)
        except HttpError as exc:
            self._refuse(exc.status, BAD_REQUEST, exc.message)
            return
        self._begin(head)

    def _begin(self, head: RequestHead) -> None:
        host = self._host
        if not host.authorized(head):
            # Refused before reading the body, and deliberately vague.
            self._refuse(401, UNAUTHORIZED, "Missing or wrong token", head.content_length)
            return
        if head.content_length is not None and head.content_length > host.max_body:
            message = (
                f"Request body of {head.content_length} bytes exceeds the limit of"
                f" {host.max_body} bytes (RAYFINE_MAX_BODY_BYTES)"
            )
            self._refuse(413, TOO_LARGE, message, head.content_length)
            return
        if head.expect_continue and head.has_body and self._transport is not None:
            self._transport.write(CONTINUE)
        body = RequestBody(None if head.chunked else head.content_length or 0, host.max_body)
        request = Request(head, body, self.peer, self.resume_reading)
        self._request = request
        self._state = _BUSY
        self.deadline = None
        if not body.complete and not self._feed_body(body):
            return
        request.task = self._loop.create_task(self._serve(request))

    def _while_busy(self) -> None:
        request = self._request
        if request is not None and not request.body.complete:
            self._feed_body(request.body)
        elif len(self._buffer) > _PIPELINE_LIMIT and not self._reading_paused:
            self._pause_reading()  # pipelined requests beyond reason wait for this one

    def _feed_body(self, body: RequestBody) -> bool:
        """Move body bytes from the buffer into ``body``; False if the connection was refused."""
        try:
            body.feed(self._buffer)
        except HttpError as exc:
            body.fail(exc)
            self._refuse(exc.status, _kind_of(exc.status), exc.message)
            return False
        if body.complete:
            self.deadline = None
        else:  # a client that stops sending mid-body is dropped like one that stalls a head
            self.deadline = self._loop.time() + self._host.header_timeout
            if body.backlog > RequestBody.HIGH_WATER and not self._reading_paused:
                self._pause_reading()
        return True

    def _pause_reading(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._reading_paused = True
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        """Read again (after a streaming body reader drained what was buffered)."""
        if self._reading_paused and self._transport is not None:
            self._reading_paused = False
            self._transport.resume_reading()

    # --- answering --------------------------------------------------------------------

    async def _serve(self, request: Request) -> None:
        try:
            response = await self._host.handle(request)
        except asyncio.CancelledError:
            if request.cancel_reason != SHUTDOWN:
                return  # the client is gone: nobody to answer
            message = "The server is shutting down (SIGTERM); the call was cancelled"
            response = CallError(OVERLOADED, message).to_response()
            response.close = True
        except HttpError as exc:  # the body could not be read, or (proxy) the app misbehaved
            kind = _kind_of(exc.status)
            response = CallError(kind, exc.message, status=exc.status).to_response()
            response.close = True
        except CallError as exc:
            response = exc.to_response()
        except Exception as exc:  # a bug in the server itself: answer, keep serving
            logger.exception("Internal error on %s %s", request.head.method, request.head.path)
            response = CallError(INTERNAL_ERROR, f"{type(exc).__name__}: {exc}").to_response()
        if isinstance(response, StreamResponse):
            await self._stream(request, response)
        else:
            self._send(request, response)

    def _send(self, request: Request, response: Response) -> None:
        if self._state != _BUSY or self._transport is None:
            return  # gone, or already refused while its body arrived
        keep_alive = self._keeps_alive(request, response.close)
        head = response.encode_head(keep_alive)
        if request.head.method == "HEAD":
            self._transport.write(head)
        elif len(response.body) < 65536:
            self._transport.write(head + response.body)
        else:
            self._transport.writelines((head, response.body))
        self._done(keep_alive)

    async def _stream(self, request: Request, response: StreamResponse) -> None:
        transport = self._transport
        if self._state != _BUSY or transport is None:
            return
        keep_alive = self._keeps_alive(request, response.close) and response.tunnel is None
        transport.write(response.head + (b"\r\n" if keep_alive else b"connection: close\r\n\r\n"))
        body = response.body
        try:
            if response.tunnel is not None:
                await self._run_tunnel(response.tunnel)
                return
            if body is not None:
                async for piece in body:
                    if self._state != _BUSY:
                        return
                    await self._write(piece)
        except Exception as exc:
            logger.debug("Proxied response cut short: %s", exc)
            self._close()
            return
        finally:
            aclose = getattr(body, "aclose", None)
            if aclose is not None:
                await aclose()  # hands the app's connection back (or closes it) now
        self._done(keep_alive)

    async def _run_tunnel(self, tunnel: Tunnel) -> None:
        """Become a byte pipe between the client and the app until either side closes."""
        self._state = _TUNNEL
        self._tunnel = tunnel
        self.deadline = None
        if self._buffer:
            tunnel.send(bytes(self._buffer))
            self._buffer.clear()
        if self._reading_paused:
            self.resume_reading()
        try:
            await tunnel.pump(self._write)
        finally:
            tunnel.close()
            self._close()

    async def _write(self, piece: bytes) -> None:
        if self._state in (_BUSY, _TUNNEL) and self._transport is not None:
            self._transport.write(piece)
            if self._writable is not None:
                await self._writable

    def _keeps_alive(self, request: Request, close: bool) -> bool:
        return (
            request.head.keep_alive
            and not close
            and request.body.complete
            and not self._host.shutting_down
        )

    def _done(self, keep_alive: bool) -> None:
        self._request = None
        if not keep_alive:
            self._close()
            return
        self._state = _IDLE
        self.deadline = self._loop.time() + self._host.idle_timeout
        self._host.touch(self)
        if self._reading_paused:
            self.resume_reading()
        if self._buffer:
            self._read_head()

    def _refuse(self, status: int, kind: str, message: str, declared: Optional[int] = None) -> None:
        """Answer a request that will not be read any further, then close, lingering.

        :param declared: the body length the client announced, which it may send
            before it reads the answer: that much is dropped too (up to 1 GiB).
        """
        self._host.refused(kind, self.peer)
        response = CallError(kind, message, status=status).to_response()
        transport = self._transport
        self._request = None
        self._buffer.clear()
        if transport is None or transport.is_closing():
            self._close()
            return
        transport.write(response.encode_head(False) + response.body)
        if not transport.can_write_eof():
            self._close()
            return
        transport.write_eof()
        self._state = _LINGER
        self._linger_left = min(_LINGER_MAX, (declared or 0) + _LINGER_BYTES)
        self.deadline = self._loop.time() + LINGER_SECONDS
        if self._reading_paused:
            self.resume_reading()

    def _drain(self, size: int) -> None:
        self._linger_left -= size
        if self._linger_left < 0:
            self._close()
        else:
            self.deadline = self._loop.time() + LINGER_SECONDS

    def _close(self) -> None:
        self._state = _CLOSED
        self._request = None
        if self._transport is not None:
            self._transport.close()

    # --- called by the server ---------------------------------------------------------

    @property
    def idle(self) -> bool:
        """Between requests (or before the first): closing it loses nothing."""
        return self._state == _IDLE

    @property
    def request(self) -> Optional[Request]:
        """The request being served, if any."""
        return self._request

    def expire(self) -> None:
        """The deadline passed: drop an idle connection, refuse a stalled request."""
        if self._state in (_IDLE, _LINGER):
            self._close()
        elif self._state == _HEAD or (self._state == _BUSY and self.deadline is not None):
            message = f"Request not received within {self._host.header_timeout:g} s"
            if self._request is not None:
                self._request.body.fail(HttpError(408, message))
                self._request.cancel(DISCONNECTED)
            self._refuse(408, BAD_REQUEST, message)

    def close_if_idle(self) -> bool:
        """Close the connection if no request is being read or served; True if closed.

        A request the kernel holds but the loop has not read yet counts: closing then
        would reset the client's connection under a call it has already sent.
        """
        if self._state == _IDLE and not self._unread_bytes():
            self._close()
            return True
        return False

    def _unread_bytes(self) -> bool:
        raw = self._transport.get_extra_info("socket") if self._transport is not None else None
        if raw is None:
            return False
        try:  # a duplicate descriptor: asyncio's socket wrapper has no recv
            with socket.socket(raw.family, raw.type, fileno=os.dup(raw.fileno())) as peek:
                return bool(peek.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except OSError:  # nothing waiting (EAGAIN), or the peer is gone
            return False


def _kind_of(status: int) -> str:
    """The error kind for an :class:`HttpError`'s status."""
    if status == 413:
        return TOO_LARGE
    return INTERNAL_ERROR if status >= 500 else BAD_REQUEST
