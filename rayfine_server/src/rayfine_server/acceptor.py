"""Accept connections one at a time, never more than the connection cap.

asyncio's own server accepts up to its backlog (hundreds of sockets) in one
go before any protocol sees them, so a flood of connections exhausts the
file descriptors before a cap can act.  Here every ``accept()`` is decided
on at once: the connection is admitted, or an idle keep-alive connection is
closed to make room, or it is answered ``503 overloaded`` and closed on the
spot; and when the process is out of descriptors anyway, accepting pauses
briefly instead of spinning.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import stat
from typing import Callable, Optional

logger = logging.getLogger(__name__)

BACKLOG = 1024
_BATCH = 64
"""Connections accepted per wake-up, so one flood cannot starve the event loop."""
_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_PAUSE = 0.25


def listen(uds: Optional[str], host: str, port: int) -> socket.socket:
    """A non-blocking listening socket: on the Unix socket ``uds`` if set, else TCP."""
    if uds:
        os.makedirs(os.path.dirname(os.path.abspath(uds)), exist_ok=True)
        remove_socket_file(uds)  # left by an earlier run
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(uds)
            os.chmod(uds, 0o666)  # the client protects the directory instead
            sock.listen(BACKLOG)
        except BaseException:
            sock.close()
            raise
    else:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family, backlog=BACKLOG)
    sock.setblocking(False)
    return sock


def remove_socket_file(path: str) -> None:
    """Remove the Unix socket at ``path``, if one is there (never any other file)."""
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass


class Acceptor:
    """Accepts from ``sock`` and hands each admitted connection to ``start``.

    :param sock: the listening socket.
    :param admit: decides on a new connection (may close an idle one to make room).
    :param start: takes an admitted connection (a connected non-blocking socket).
    :param refused: called with a reason for every connection refused here.
    """

    def __init__(
        self,
        sock: socket.socket,
        admit: Callable[[], bool],
        start: Callable[[socket.socket], None],
        refused: Callable[[str], None],
        refusal: bytes,
    ) -> None:
        self._sock = sock
        self._admit = admit
        self._start = start
        self._refused = refused
        self._refusal = refusal
        self._loop = asyncio.get_running_loop()
        self._tcp = sock.family in (socket.AF_INET, socket.AF_INET6)
        self._reading = False
        self._closed = False

    def start(self) -> None:
        """Begin accepting."""
        if not self._reading and not self._closed:
            self._loop.add_reader(self._sock.fileno(), self._accept)
            self._reading = True

    def close(self) -> None:
        """Stop accepting and close the listening socket."""
        self._pause()
        self._closed = True
        self._sock.close()

    def _pause(self) -> None:
        if self._reading:
            self._loop.remove_reader(self._sock.fileno())
            self._reading = False

    def _accept(self) -> None:
        for _ in range(_BATCH):
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _OUT_OF_RESOURCES:
                    self._refused("out of file descriptors")
                    self._pause()
                    self._loop.call_later(_PAUSE, self.start)
                    return
                continue  # ECONNABORTED and the like: that client is gone already
            if not self._admit():
                self._refuse(conn)
                continue
            conn.setblocking(False)
            if self._tcp:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._start(conn)

    def _refuse(self, conn: socket.socket) -> None:
        """Answer 503 without reading anything, and close at once (no descriptor is kept)."""
        self._refused("connection limit")
        try:
            conn.setblocking(False)
            conn.send(self._refusal)
        except OSError:
            pass
        finally:
            conn.close()
