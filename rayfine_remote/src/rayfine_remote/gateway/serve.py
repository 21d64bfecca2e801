"""Running the gateway: lock its state directory, pick its certificate, serve it with uvicorn.

uvicorn with its C parser (httptools) and event loop (uvloop) where
installed.  The listening socket is bound here, before start-up, so port 0
works and the "ready" line can say where to connect.  SIGTERM/SIGINT stop
the gateway gracefully (every environment is stopped), SIGHUP re-reads the
tokens file.  One gateway per name at a time: the state directory's lock
(an ``flock``, released even on SIGKILL) makes a second one refuse to start,
so reaping "this gateway's leftovers" at start-up never hits a live gateway.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import ssl
from pathlib import Path
from typing import IO, Any, Callable, Optional

from rayfine_core.errors import ValidationError
from rayfine_core.plugins.manager import get_runtime

from .app import Gateway
from .audit import Audit
from .config import GatewayConfig
from .tls import fingerprint, self_signed, server_context

log = logging.getLogger("rayfine.gateway")


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
        import uvicorn

        config.state.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock = _lock(config.state / "lock")
        try:
            context, pin = _tls(config)
            self._sock = _listen(config)
            self.url = _url(config, self._sock, pin)
            self.audit = Audit(config.audit_log)
            self.gateway = Gateway(config, get_runtime(config.runtime), self.audit)
        except BaseException:
            self._lock.close()
            raise
        self.gateway.on_ready = lambda: announce(self.url)
        settings = _Config(
            self.gateway,
            context,
            loop="uvloop" if _has("uvloop") else "asyncio",
            http=_protocol(),
            ws="none",
            interface="asgi3",
            lifespan="on",
            log_level="warning",
            access_log=False,
            proxy_headers=False,
            server_header=False,
            date_header=False,
            timeout_keep_alive=75,
            timeout_graceful_shutdown=5,
            backlog=4096,
        )
        logging.getLogger("uvicorn.error").addFilter(_AbortFilter())
        self._server = uvicorn.Server(settings)

    def run(self) -> None:
        """Serve until :meth:`stop`, SIGTERM or SIGINT (signals only in the main thread)."""
        self._server.run(sockets=[self._sock])

    def stop(self) -> None:
        """Ask the server to shut down (it stops every environment first)."""
        self._server.should_exit = True

    def close(self) -> None:
        self._sock.close()
        self.audit.close()
        self._lock.close()


class _AbortFilter(logging.Filter):
    """Drop uvicorn's complaint about the responses the gateway cuts short on purpose (asgi.abort)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "without completing response" not in record.getMessage()


def _Config(app: Any, context: Optional[ssl.SSLContext], **kwargs: Any) -> Any:
    """uvicorn's settings with the gateway's own TLS context (TLS 1.2+, the default ciphers)."""
    import uvicorn

    class Config(uvicorn.Config):
        def load(self) -> None:
            super().load()
            self.ssl = context

    return Config(app, **kwargs)


def _protocol() -> Any:
    """The HTTP protocol: uvicorn's C-parser one with writes gathered (see .protocol), else h11."""
    if not _has("httptools"):
        return "h11"
    from .protocol import GatewayProtocol

    return GatewayProtocol


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def _lock(path: Path) -> IO[str]:
    handle = open(path, "a+")
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
