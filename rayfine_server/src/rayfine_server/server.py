"""The listener: accept connections within limits, sweep timeouts, stop gracefully.

Owns what is shared by every connection: the token check, the refusal log,
the connection cap (idle keep-alive connections are closed to make room
before a new connection is refused), and the once-a-second sweep that drops
connections past their deadline.  On SIGTERM it stops listening, lets
in-flight calls finish for :data:`GRACE` seconds, cancels the rest, ends the
app (``Actor.close()`` of every session), and returns.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
from typing import Dict, Optional, Protocol, Union

from .acceptor import Acceptor, listen, remove_socket_file
from .auth import RefusalLog, TokenCheck
from .config import ServerConfig
from .connection import HttpConnection
from .errors import OVERLOADED, CallError
from .httpparse import RequestHead
from .request import SHUTDOWN, Request
from .responses import Response, StreamResponse

logger = logging.getLogger(__name__)

GRACE = 5.0
"""Seconds in-flight calls get to finish after SIGTERM before they are cancelled."""
CLOSE_GRACE = 3.0
"""Seconds the app gets to end its sessions (``Actor.close()``) on the way out."""
FD_RESERVE = 128
"""File descriptors kept free of connections, for env.py's own files and sockets."""


class App(Protocol):
    """What the server serves: a function-based env, or a proxied http app."""

    def start(self, stop: asyncio.Future[int]) -> None:
        """Called on the loop before serving; resolving ``stop`` ends the server."""

    def tick(self) -> None: ...

    async def handle(self, request: Request) -> Union[Response, StreamResponse]: ...

    async def shutdown(self) -> None: ...


class Server:
    """Serves ``app`` on the configured Unix socket or TCP address.

    :param config: the server's settings.
    :param app: what answers authenticated requests.
    :param grace: seconds in-flight calls get to finish when stopping.
    :param close_grace: seconds the app gets to end its sessions when stopping.
    """

    def __init__(
        self, config: ServerConfig, app: App, grace: float = GRACE, close_grace: float = CLOSE_GRACE
    ) -> None:
        self._config = config
        self._app = app
        self._grace = grace
        self._close_grace = close_grace
        self.header_timeout = config.header_timeout
        self.idle_timeout = config.idle_timeout
        self.max_body = config.max_body
        self.shutting_down = False
        self.max_connections = connection_limit(config.max_connections)
        self._connections: Dict[HttpConnection, None] = {}  # oldest (least recently used) first
        self._check = TokenCheck(config.token)
        self._refusals = RefusalLog()
        self._acceptor: Optional[Acceptor] = None
        self.handle = app.handle  # the connection's Host.handle, without a hop through here

    # --- admission ---------------------------------------------------------------------

    def _has_room(self) -> bool:
        """Room for one more connection: close the longest-idle one if at the cap."""
        if len(self._connections) < self.max_connections:
            return True
        for other in self._connections:
            if other.close_if_idle():
                del self._connections[other]
                return True
        return False

    def _start_connection(self, conn: socket.socket) -> None:
        connection = HttpConnection(self)
        self._connections[connection] = None
        opening = asyncio.ensure_future(
            asyncio.get_running_loop().connect_accepted_socket(lambda: connection, conn)
        )
        opening.add_done_callback(lambda done: self._opened(done, connection, conn))

    def _opened(
        self, done: asyncio.Future, connection: HttpConnection, conn: socket.socket
    ) -> None:
        if done.cancelled() or done.exception() is not None:
            self._connections.pop(connection, None)
            conn.close()

    # --- the connection's Host protocol ---------------------------------------------------

    def touch(self, connection: HttpConnection) -> None:
        """``connection`` just answered a request: it is now the most recently used."""
        if connection in self._connections:
            del self._connections[connection]
            self._connections[connection] = None

    def forget(self, connection: HttpConnection) -> None:
        self._connections.pop(connection, None)

    def authorized(self, head: RequestHead) -> bool:
        return self._check(head)

    def refused(self, what: str, peer: str) -> None:
        self._refusals.note(what, peer)

    # --- running ----------------------------------------------------------------------------

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    async def serve(self, stop: asyncio.Future[int]) -> int:
        """Listen, serve until ``stop`` resolves, shut down; return ``stop``'s exit code."""
        config = self._config
        refusal = CallError(OVERLOADED, "Too many open connections; retry, or close idle ones")
        response = refusal.to_response()
        self._acceptor = Acceptor(
            listen(config.uds, config.host, config.port),
            self._has_room,
            self._start_connection,
            lambda what: self._refusals.note(what, "-"),
            response.encode_head(False) + response.body,
        )
        self._acceptor.start()
        self._app.start(stop)
        sweeper = asyncio.ensure_future(self._sweep_forever())
        try:
            code = await stop
        finally:
            sweeper.cancel()
            await self._shutdown()
        return code

    async def _sweep_forever(self) -> None:
        interval = min(1.0, self.header_timeout / 4)
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            for connection in list(self._connections):
                deadline = connection.deadline
                if deadline is not None and now >= deadline:
                    connection.expire()
            self._refusals.tick()
            self._app.tick()

    async def _shutdown(self) -> None:
        self.shutting_down = True
        if self._acceptor is not None:
            self._acceptor.close()
        for connection in list(self._connections):
            connection.close_if_idle()
        await self._wait_for_requests(self._grace)
        for connection in list(self._connections):
            if connection.request is not None:
                connection.request.cancel(SHUTDOWN)
        await self._wait_for_requests(1.0)
        try:
            await asyncio.wait_for(self._app.shutdown(), self._close_grace)
        except asyncio.TimeoutError:
            logger.warning(
                "Sessions were still closing after %g s; exiting anyway", self._close_grace
            )
        for connection in list(self._connections):
            connection.close_if_idle()
        self._refusals.flush()
        if self._config.uds:
            remove_socket_file(self._config.uds)

    async def _wait_for_requests(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while loop.time() < deadline and any(c.request for c in self._connections):
            await asyncio.sleep(0.02)


def connection_limit(requested: int) -> int:
    """``requested``, raised into or clamped below the process's file descriptor limit.

    The soft RLIMIT_NOFILE is raised towards the hard one if needed; what
    remains is kept :data:`FD_RESERVE` descriptors short of it, so a flood of
    connections cannot take the descriptors env.py and the server need.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = requested + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return requested
    reserve = min(FD_RESERVE, soft // 4)
    limit = max(1, min(requested, soft - reserve))
    if limit < requested:
        logger.warning(
            "RAYFINE_MAX_CONNECTIONS lowered from %d to %d: the file descriptor limit is %d",
            requested,
            limit,
            soft,
        )
    return limit
