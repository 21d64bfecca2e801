"""One request as routes see it: its head, its body as it arrives, and why it was cancelled."""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, Callable, List, Optional

from .httpparse import ChunkedDecoder, HttpError, RequestHead

DISCONNECTED = "disconnected"
SHUTDOWN = "shutdown"
SESSION_CLOSED = "session_closed"


class RequestBody:
    """The body of one request, fed by the connection as bytes arrive.

    Routes either :meth:`read` it whole (capped by the connection's limit) or
    :meth:`stream` it (proxy mode); streaming applies back-pressure through
    ``pause``/``resume``, which the connection provides.

    :param length: the declared Content-Length, or ``None`` for a chunked body.
    :param limit: the largest body accepted, in bytes.
    """

    __slots__ = ("_data", "_decoder", "_error", "_pieces", "_remaining", "_waiter", "complete")

    HIGH_WATER = 1024 * 1024

    def __init__(self, length: Optional[int], limit: int) -> None:
        self._remaining = length or 0
        self._decoder = ChunkedDecoder(limit) if length is None else None
        self._data = bytearray()
        self._pieces: Optional[List[bytes]] = None  # set once streaming starts
        self._waiter: Optional[asyncio.Future[None]] = None
        self._error: Optional[BaseException] = None
        self.complete = length == 0

    def feed(self, buffer: bytearray) -> None:
        """Take this body's bytes from the front of ``buffer``, leaving what follows it.

        :raises HttpError: bad chunked framing, or a chunked body over the limit.
        """
        if self._decoder is not None:
            pieces = self._decoder.feed(buffer)
            self.complete = self._decoder.done
        else:
            take = min(self._remaining, len(buffer))
            pieces = [bytes(buffer[:take])] if take else []
            del buffer[:take]
            self._remaining -= take
            self.complete = self._remaining == 0
        for piece in pieces:
            if self._pieces is not None:
                self._pieces.append(piece)
            else:
                self._data += piece
        if (pieces or self.complete) and self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def fail(self, error: BaseException) -> None:
        """The body will never complete (bad framing, or the client went away)."""
        self._error = error
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    @property
    def backlog(self) -> int:
        """Bytes a streaming reader has not taken yet (0 for a body read whole)."""
        return sum(map(len, self._pieces)) if self._pieces is not None else 0

    async def read(self) -> bytearray:
        """The whole body, once it has arrived (handed over, not copied: read it once)."""
        while not self.complete:
            await self._wait()
        data, self._data = self._data, bytearray()
        return data

    async def stream(self, resume: Callable[[], None]) -> AsyncIterator[bytes]:
        """The body's pieces as they arrive; ``resume`` is called after each is taken."""
        self._pieces = [bytes(self._data)] if self._data else []
        self._data = bytearray()
        while True:
            while self._pieces:
                yield self._pieces.pop(0)
                resume()
            if self.complete:
                return
            await self._wait()

    async def _wait(self) -> None:
        if self._error is not None:
            raise self._error
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None
        if self._error is not None:
            raise self._error


class Request:
    """One request in flight.

    :param head: the parsed request line and headers.
    :param body: its body (complete at once for the usual small request).
    :param peer: who sent it, for logs (an IP address, or ``unix``).
    """

    __slots__ = ("body", "cancel_reason", "head", "peer", "resume_reading", "task")

    def __init__(
        self,
        head: RequestHead,
        body: RequestBody,
        peer: str,
        resume_reading: Callable[[], None] = lambda: None,
    ) -> None:
        self.head = head
        self.body = body
        self.peer = peer
        self.resume_reading = resume_reading
        """Streaming body readers call this after taking a piece (back-pressure)."""
        self.task: Optional[asyncio.Task] = None
        self.cancel_reason: Optional[str] = None
        """Set by whoever cancels :attr:`task`: :data:`DISCONNECTED`, :data:`SHUTDOWN`,
        :data:`SESSION_CLOSED`; ``None`` while nobody has."""

    def cancel(self, reason: str) -> None:
        """Cancel the request's task (once) and record why."""
        if self.cancel_reason is None and self.task is not None and not self.task.done():
            self.cancel_reason = reason
            self.task.cancel()


__all__ = ["DISCONNECTED", "SESSION_CLOSED", "SHUTDOWN", "HttpError", "Request", "RequestBody"]
