"""Running the gateway: lock its state directory, pick its certificate, serve until told to stop.

The listening socket is bound before start-up, so port 0 works and the
"ready" line can say where to connect.  Start-up removes what an earlier
run of this gateway left (see :meth:`.app.Gateway.startup`), then serves
with :mod:`.server` on uvloop where installed.  SIGTERM/SIGINT stop it
gracefully: no new connections, requests in flight get a few seconds, then
every environment is stopped.  SIGHUP re-reads the tokens file.  One
gateway per name at a time: the state directory's lock (an ``flock``,
released even on SIGKILL) makes a second one refuse to start, so reaping
"this gateway's leftovers" never hits a live gateway.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
import socket
import ssl
import threading
from pathlib import Path
from typing import IO, Callable, Optional

from rayfine_core.errors import ValidationError
from rayfine_core.plugins.manager import get_runtime

from .app import Gateway
from .audit import Audit
from .config import GatewayConfig
from .server import Server
from .tls import fingerprint, self_signed, server_context

log = logging.getLogger("rayfine.gateway")
DRAIN_SECONDS = 5.0
"""On shut-down, how long requests in flight may take before their connections are cut."""


def serve(config: GatewayConfig, announce: Callable[[str], None] = print) -> None:
    """Serve until SIGTERM/SIGINT; ``announce`` gets one line with the URL (and pin) once listening.

    :raises ValidationError: bad settings, a second gateway of the same name, an unusable certificate.
    :raises EngineUnavailableError: the runtime cannot be reached.
    """
    served = Served(config, announce)
    try:
        served.run()
    finally:
        served.close()


class Served:
    """A gateway bound to its socket, ready to run (in this thread) and to be stopped (from any).

    :raises ValidationError: as :func:`serve`.
    """

    def __init__(self, config: GatewayConfig, announce: Callable[[str], None] = print) -> None:
        config.state.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock = _lock(config.state / "lock")
        try:
            self._context, pin = _tls(config)
            self._sock = _listen(config)
            self.url = _url(config, self._sock, pin)
            self.audit = Audit(config.audit_log)
            self.gateway = Gateway(config, get_runtime(config.runtime), self.audit)
        except BaseException:
            self._lock.close()
            raise
        self._announce = announce
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stopping: Optional[asyncio.Event] = None

    def run(self) -> None:
        """Serve until :meth:`stop`, SIGTERM or SIGINT (signals only in the main thread)."""
        try:
            import uvloop
        except ImportError:
            asyncio.run(self._main())
        else:
            uvloop.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._loop.add_signal_handler(signum, self._stopping.set)
        await self.gateway.startup()
        http = Server(self.gateway)
        listener = await self._loop.create_server(
            http.protocol, sock=self._sock, ssl=self._context, backlog=4096
        )
        self._announce(self.url)
        try:
            await self._stopping.wait()
        finally:
            listener.close()
            http.close_idle()
            await http.drain(DRAIN_SECONDS)
            await self.gateway.shutdown()

    def stop(self) -> None:
        """Ask the gateway to shut down (it stops every environment first); any thread."""
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)

    def close(self) -> None:
        self._sock.close()
        self.audit.close()
        self._lock.close()


def _lock(path: Path) -> IO[str]:
    handle = open(path, "a+")  # noqa: SIM115 - held while the gateway runs (its lock)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        raise ValidationError(
            f"Another gateway with this name runs already (pid {holder}, lock {path}); stop it,"
            " or give this one another --name."
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def _tls(config: GatewayConfig) -> tuple[Optional[ssl.SSLContext], Optional[str]]:
    if not config.tls:
        return None, None
    if config.tls_cert is not None and config.tls_key is not None:
        cert, key = config.tls_cert, config.tls_key
    else:
        cert, key = self_signed(config.state / "tls", [config.host])
    return server_context(cert, key), fingerprint(cert)


def _listen(config: GatewayConfig) -> socket.socket:
    if config.unix_socket:
        path = Path(config.unix_socket)
        if path.is_socket():
            path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        os.chmod(path, 0o660)  # the token still decides; the mode keeps other users from trying
    else:
        family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((config.host, config.port))
        except OSError as exc:
            sock.close()
            raise ValidationError(f"Cannot listen on {config.host}:{config.port}: {exc}") from None
    sock.listen(4096)
    sock.set_inheritable(True)
    return sock


def _url(config: GatewayConfig, sock: socket.socket, pin: Optional[str]) -> str:
    if config.unix_socket:
        return f"unix://{config.unix_socket}"
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    if pin is None:
        return f"http://{shown}:{port}"
    return f"https://{shown}:{port}#sha256={pin}"
