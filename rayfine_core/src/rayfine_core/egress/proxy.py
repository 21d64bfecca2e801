"""The host side of environment egress: one asyncio proxy serving many Unix sockets.

Each environment gets its own socket (``run_dir/egress.sock``) with its own
policy; the proxy runs on an event loop in one daemon thread per process
and is driven from any other thread through :class:`EgressProxy`'s
blocking methods.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import socket
import stat
import threading
from typing import Any, Coroutine, Optional, TypeVar

from ..errors import UnknownEnvironmentError, ValidationError
from .limits import ProxyLimits
from .policy import EgressPolicy
from .resolver import Resolver, SystemResolver
from .stats import EgressStats, EnvCounters
from .tunnel import Context, Site, serve_connection

T = TypeVar("T")
_MAX_SUN_PATH = 107  # sockaddr_un.sun_path is 108 bytes with the NUL


class EgressProxy:
    """Serve egress for many environments from one event loop in a daemon thread.

    :param resolver: turns names into addresses (default: the host's DNS).
    :param limits: connection and time bounds applied to every environment.
    """

    def __init__(
        self, resolver: Optional[Resolver] = None, limits: Optional[ProxyLimits] = None
    ) -> None:
        self.limits = limits or ProxyLimits()
        self._resolver = resolver or SystemResolver()
        self._lock = threading.Lock()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._sites: dict[str, tuple[Site, asyncio.AbstractServer, int]] = {}
        self._counters: dict[str, EnvCounters] = {}
        self._closed = False

    # -- public, blocking -----------------------------------------------------

    def add(self, socket_path: str, policy: EgressPolicy, env_id: str) -> None:
        """Listen on ``socket_path`` (mode 0666) for ``env_id``'s connections, judged by ``policy``.

        Raises :class:`ValidationError` if the path is too long for a Unix
        socket or already served, ``OSError`` if it cannot be bound.
        """
        path = os.fspath(socket_path)
        if len(os.fsencode(path)) > _MAX_SUN_PATH:
            raise ValidationError(f"egress socket path is too long for a Unix socket: {path}")
        policy = EgressPolicy.coerce(policy)
        with self._lock:
            if path in self._sites:
                raise ValidationError(f"egress socket {path} is already served")
        sock, inode = bind_socket(path)
        try:
            self._call(self._start_site(path, sock, inode, policy, env_id))
        except BaseException:
            sock.close()
            unlink_if_ours(path, inode)
            raise

    def remove(self, socket_path: str) -> EgressStats:
        """Stop serving ``socket_path``, close its connections, delete it; return its env's stats.

        Unknown paths are fine (returns zeros): removal is idempotent.
        """
        path = os.fspath(socket_path)
        with self._lock:
            entry = self._sites.pop(path, None)
        if entry is None:
            return EgressStats()
        site, server, inode = entry
        unlink_if_ours(path, inode)
        if self._loop is not None and not self._closed:
            self._call(self._stop_site(site, server))
        snapshot = site.counters.snapshot()
        with self._lock:
            if not any(s.env_id == site.env_id for s, _, _ in self._sites.values()):
                self._counters.pop(site.env_id, None)
        return snapshot

    def stats(self, env_id: str) -> EgressStats:
        """Counters of ``env_id`` over all its sockets; :class:`UnknownEnvironmentError` if none."""
        with self._lock:
            counters = self._counters.get(env_id)
        if counters is None:
            raise UnknownEnvironmentError(f"no egress socket is served for environment {env_id!r}")
        return counters.snapshot()

    def paths(self) -> list[str]:
        with self._lock:
            return list(self._sites)

    def close(self) -> None:
        """Remove every socket and stop the thread; idempotent."""
        for path in self.paths():
            self.remove(path)
        with self._lock:
            self._closed = True
            loop, thread = self._loop, self._thread
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)

    # -- the loop thread ------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        loop = self._ensure_loop()
        if threading.current_thread() is self._thread:
            raise RuntimeError("EgressProxy's blocking methods cannot be called from its own loop")
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, loop)
        return future.result(timeout=30)

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                raise RuntimeError("this EgressProxy is closed")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                # getaddrinfo cannot be cancelled: give it its own small pool so slow
                # DNS for one environment cannot take the threads of the whole process.
                loop.set_default_executor(
                    concurrent.futures.ThreadPoolExecutor(
                        8, thread_name_prefix="rayfine-egress-dns"
                    )
                )
                thread = threading.Thread(
                    target=_run_loop, args=(loop,), name="rayfine-egress", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    async def _start_site(
        self, path: str, sock: socket.socket, inode: int, policy: EgressPolicy, env_id: str
    ) -> None:
        with self._lock:
            counters = self._counters.setdefault(env_id, EnvCounters(env_id))
        site = Site(path=path, env_id=env_id, policy=policy, counters=counters)
        ctx = Context(resolver=self._resolver, limits=self.limits, total_active=self._total_active)

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            # Its own task, so that removing the site can cancel it without asyncio's
            # stream machinery logging the cancellation as an error.
            await asyncio.gather(
                serve_connection(reader, writer, site, ctx), return_exceptions=True
            )

        server = await asyncio.start_unix_server(on_connect, sock=sock, limit=64 * 1024)
        with self._lock:
            self._sites[path] = (site, server, inode)

    async def _stop_site(self, site: Site, server: asyncio.AbstractServer) -> None:
        server.close()
        tasks = list(site.connections)
        for task in tasks:
            task.cancel()  # each closes its own client and upstream on the way out
        await asyncio.gather(*tasks, return_exceptions=True)

    def _total_active(self) -> int:
        with self._lock:
            return sum(c.snapshot().active for c in self._counters.values())


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()


def bind_socket(path: str) -> tuple[socket.socket, int]:
    """A listening Unix socket at ``path`` that any local user may connect to, and its inode.

    The directory is shared with the container, whose code may swap the new
    file for a symlink at any moment: the mode is set through an ``O_PATH``
    descriptor of the file itself, so a symlink is never followed.
    """
    if os.path.lexists(path):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise ValidationError(f"{path} exists and is not a socket; refusing to replace it")
        os.unlink(path)  # a stale socket of an earlier run
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(128)
        inode = _chmod_socket_file(path, 0o666)
    except BaseException:
        sock.close()
        raise
    return sock, inode


def _chmod_socket_file(path: str, mode: int) -> int:
    o_path = getattr(os, "O_PATH", 0)
    if not o_path:  # not Linux: no O_PATH; lstat first so a symlink is at least noticed
        info = os.lstat(path)
        if not stat.S_ISSOCK(info.st_mode):
            raise OSError(f"{path} was replaced while being created")
        os.chmod(path, mode)
        return info.st_ino
    fd = os.open(path, o_path | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISSOCK(info.st_mode):
            raise OSError(f"{path} was replaced while being created")
        os.chmod(f"/proc/self/fd/{fd}", mode)
        return info.st_ino
    finally:
        os.close(fd)


def unlink_if_ours(path: str, inode: int) -> None:
    """Delete the socket file at ``path`` if it is still the one we bound."""
    try:
        info = os.lstat(path)
        if stat.S_ISSOCK(info.st_mode) and info.st_ino == inode:
            os.unlink(path)
    except OSError:
        pass
