"""Find the podman API service, or start a private one.

Order: ``RAYFINE_PODMAN_URL``, then ``CONTAINER_HOST`` (podman's own
variable), then the usual sockets (rootful, then rootless), then, if the
``podman`` binary is installed, ``podman system service`` on a private
socket.  A service started here belongs to this process: :meth:`close` and
interpreter exit stop it, and a watchdog stops it even if this process is
killed without running its exit handlers.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

import httpx

from rayfine_core import errors

ROOTFUL_SOCKET = "/run/podman/podman.sock"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

# `podman system service --time=0` never exits by itself, so it must not
# outlive us.  The shell waits for the service while a reader holds our pipe:
# when the pipe closes (close(), exit, or our death by SIGKILL) it stops the
# service.  If the service dies first, the shell exits and we see it.
# (A background job's stdin is /dev/null, hence the pipe passed on fd 3.)
_WATCHDOG = 'podman system service --time=0 "$1" & pid=$!; exec 3<&0; { read -r _ <&3; kill "$pid"; } 2>/dev/null & wait "$pid"'


def candidate_sockets() -> list[str]:
    """Sockets a running podman service usually listens on, rootful first."""
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
    return [ROOTFUL_SOCKET, f"{runtime_dir}/podman/podman.sock"]


def ping(url: str, timeout: float = 3.0) -> bool:
    """True if a podman (or Docker-compatible) API answers ``/_ping`` at a ``unix://`` URL."""
    path = _socket_path(url)
    if path is None or not os.path.exists(path):
        return False
    try:
        with httpx.Client(transport=httpx.HTTPTransport(uds=path), timeout=timeout) as client:
            return client.get("http://podman/_ping").status_code == 200
    except (httpx.HTTPError, OSError):
        return False


def redact(url: str) -> str:
    """The URL without a password (CONTAINER_HOST may be ``ssh://user:pw@host``)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def _socket_path(url: str) -> Optional[str]:
    for prefix in ("unix://", "http+unix://"):
        if url.startswith(prefix):
            return url[len(prefix) :]
    return None


class PodmanService:
    """Resolves the service URL once; owns the process only if it started one."""

    def __init__(self, url: Optional[str] = None, start_timeout: float = START_TIMEOUT) -> None:
        self._explicit = url
        self._start_timeout = start_timeout
        self._process: Optional[subprocess.Popen[bytes]] = None
        self._dir: Optional[Path] = None
        self._lock = threading.Lock()
        self.url: Optional[str] = None
        self.started_here = False

    def resolve(self) -> str:
        """Return a URL podman-py can use, starting a private service if nothing answers."""
        with self._lock:
            if self.url is None:
                self.url = self._find() or self._start()
            return self.url

    def _find(self) -> Optional[str]:
        configured = (
            self._explicit
            or os.environ.get("RAYFINE_PODMAN_URL")
            or os.environ.get("CONTAINER_HOST")
        )
        if configured:
            return configured  # the user chose it: report its failure rather than fall back
        for path in candidate_sockets():
            if ping(f"unix://{path}"):
                return f"unix://{path}"
        return None

    def _start(self) -> str:
        binary = shutil.which("podman")
        if binary is None:
            raise errors.EngineUnavailableError(
                f"No podman service answers at {' or '.join(candidate_sockets())}, and the podman binary is"
                " not installed. Install podman (e.g. `apt-get install podman`), start its service"
                " (`podman system service --time=0 unix:///run/podman/podman.sock &`), or point"
                " RAYFINE_PODMAN_URL / CONTAINER_HOST at a running one."
            )
        self._dir = Path(tempfile.mkdtemp(prefix="rayfine-podman-"))
        url = f"unix://{self._dir / 'podman.sock'}"
        stderr = open(self._dir / "service.log", "wb")  # noqa: SIM115 - handed to the service
        try:
            self._process = subprocess.Popen(
                ["sh", "-c", _WATCHDOG, "rayfine-podman-service", url],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,  # Ctrl-C must not stop it before our cleanup has used it
                cwd="/",  # conmon fails every start once the service's directory is deleted
                env={
                    **os.environ,
                    "PATH": f"{Path(binary).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                },
            )
        finally:
            stderr.close()
        self.started_here = True
        self._wait_until_ready(url)
        return url

    def _wait_until_ready(self, url: str) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self._start_timeout
        while not ping(url, timeout=1.0):
            exited = self._process.poll() is not None
            if exited or time.monotonic() > deadline:
                log = self._service_log()
                self._stop()
                why = "exited" if exited else f"did not answer within {self._start_timeout:g}s"
                raise errors.EngineUnavailableError(
                    f"Started `podman system service` on a private socket, but it {why}. Check that"
                    " `podman info` works for this user, or start the service yourself and set"
                    " RAYFINE_PODMAN_URL."
                    + (f"\n--- podman service output ---\n{log}" if log else "")
                )
            time.sleep(0.1)

    def _service_log(self) -> str:
        try:
            assert self._dir is not None
            lines = (self._dir / "service.log").read_text(errors="replace").splitlines()
        except (OSError, AssertionError):
            return ""
        return "\n".join(lines[-20:])

    def close(self) -> None:
        """Stop the service if this object started it (and only then)."""
        with self._lock:
            self._stop()
            self.url = None

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            if process.stdin is not None:
                process.stdin.close()  # the watchdog stops the service
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)  # its own session: only what we started
                process.wait()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        self.started_here = False
