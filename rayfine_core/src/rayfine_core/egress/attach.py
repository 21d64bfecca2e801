"""Give one environment its egress: a proxied socket in its run dir, and the container's env vars.

This is what ``load_env(..., egress=[...])`` calls.  An environment owned by
this process is served by the process-wide :func:`default_proxy` thread; a
detached one by its own ``python -m rayfine_core.egress serve`` process,
which ends when the run directory (and so the socket) is removed.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Union

from ..errors import StartError
from .policy import EgressPolicy
from .proxy import EgressProxy, unlink_if_ours
from .resolver import SystemResolver, from_hosts_file
from .stats import EgressStats

SOCKET_NAME = "egress.sock"
"""The egress socket's name in the environment's run dir."""
CONTAINER_SOCKET = "/run/rayfine/" + SOCKET_NAME
"""Where the container sees it (the run dir is mounted at /run/rayfine)."""
FORWARD_PORT = 3128
"""The in-container forwarder's port on 127.0.0.1."""
READY_TIMEOUT = 10.0

_proxy_lock = threading.Lock()
_proxy: Optional[EgressProxy] = None
_proxy_pid = 0


def default_proxy() -> EgressProxy:
    """This process's shared proxy, started on first use (a fresh one after ``fork``)."""
    global _proxy, _proxy_pid
    with _proxy_lock:
        if _proxy is None or _proxy_pid != os.getpid():
            hosts = os.environ.get("RAYFINE_EGRESS_HOSTS")
            resolver = from_hosts_file(hosts, SystemResolver()) if hosts else None
            _proxy, _proxy_pid = EgressProxy(resolver), os.getpid()
        return _proxy


def container_env(port: int = FORWARD_PORT) -> dict[str, str]:
    """Variables the container needs: where the forwarder listens and the proxy settings.

    ``RAYFINE_EGRESS_SOCKET`` makes the server's launcher start the forwarder
    before it imports env.py.  Both spellings of the proxy variables are set,
    since tools disagree on which they read.
    """
    url = f"http://127.0.0.1:{port}"
    no_proxy = "localhost,127.0.0.1"
    return {
        "RAYFINE_EGRESS_SOCKET": CONTAINER_SOCKET,
        "RAYFINE_EGRESS_PORT": str(port),
        "HTTP_PROXY": url,
        "HTTPS_PROXY": url,
        "http_proxy": url,
        "https_proxy": url,
        "NO_PROXY": no_proxy,
        "no_proxy": no_proxy,
    }


@dataclass
class EgressAttachment:
    """One environment's egress socket on the host, and who serves it."""

    env_id: str
    socket_path: str
    policy: EgressPolicy
    proxy: Optional[EgressProxy] = None  # None: served by a detached process
    process: Optional[subprocess.Popen[bytes]] = None

    def stats(self) -> Optional[EgressStats]:
        """Counters so far; None when a detached process serves it (its log has them)."""
        return self.proxy.stats(self.env_id) if self.proxy is not None else None

    def detach(self, log_path: Path) -> None:
        """Hand the socket to a process of its own, so it outlives this one."""
        if self.proxy is None:
            return
        self.proxy.remove(self.socket_path)
        self.process = spawn_server(self.socket_path, self.policy, self.env_id, log_path)
        self.proxy = None

    def close(self) -> Optional[EgressStats]:
        """Stop serving and delete the socket; the final counters if served in process."""
        if self.proxy is not None:
            stats = self.proxy.remove(self.socket_path)
            self.proxy = None
            return stats
        try:
            unlink_if_ours(self.socket_path, os.lstat(self.socket_path).st_ino)
        except OSError:
            pass  # already gone: the detached server exits on its own
        return None


def attach(
    run_dir: Union[str, Path],
    policy: Union[EgressPolicy, Iterable[str]],
    env_id: str,
    *,
    detached_log: Optional[Path] = None,
    proxy: Optional[EgressProxy] = None,
) -> EgressAttachment:
    """Serve egress for ``env_id`` on ``run_dir/egress.sock``; call before the container starts.

    :param detached_log: serve from a separate process writing its log here
        (never inside ``run_dir``, which the container can write).
    :param proxy: the in-process proxy to use (default :func:`default_proxy`).
    """
    policy = EgressPolicy.coerce(policy)
    path = str(Path(run_dir) / SOCKET_NAME)
    if detached_log is not None:
        process = spawn_server(path, policy, env_id, detached_log)
        return EgressAttachment(env_id, path, policy, process=process)
    proxy = proxy or default_proxy()
    proxy.add(path, policy, env_id)
    return EgressAttachment(env_id, path, policy, proxy=proxy)


def spawn_server(
    socket_path: str, policy: EgressPolicy, env_id: str, log_path: Path
) -> subprocess.Popen[bytes]:
    """Start ``python -m rayfine_core.egress serve`` in its own session; wait until it is ready."""
    command = [
        sys.executable,
        "-m",
        "rayfine_core.egress",
        "serve",
        "--socket",
        socket_path,
        "--env-id",
        env_id,
        *policy.to_args(),
    ]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            start_new_session=True,  # SIGINT/SIGHUP of the client's terminal must not end it
            cwd="/",
        )
    assert process.stdout is not None
    try:
        ready, _, _ = select.select([process.stdout], [], [], READY_TIMEOUT)
        line = process.stdout.readline() if ready else b""
    finally:
        process.stdout.close()
    if line.strip() != b"ready":
        process.kill()
        process.wait()
        raise StartError(
            f"the egress proxy for {env_id} did not start within {READY_TIMEOUT:g} s;"
            f" see {log_path}"
        )
    return process
