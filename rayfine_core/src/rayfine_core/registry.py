"""Every environment this process has started, so none outlives it.

Environments are cleaned up on ``cleanup()``, at interpreter exit, and on
SIGTERM/SIGHUP (after which the previous handler, or the default action, runs).
"""

from __future__ import annotations

import atexit
import logging
import signal
import threading
from typing import TYPE_CHECKING, Any, Optional

from .errors import UnknownEnvironmentError

if TYPE_CHECKING:
    from .environment import BaseEnvironment

log = logging.getLogger("rayfine")
_lock = threading.Lock()
_active: dict[str, "BaseEnvironment"] = {}
_hooks_installed = False


def add(env: "BaseEnvironment") -> None:
    with _lock:
        _install_exit_hooks()
        _active[env.id] = env


def discard(env_id: str) -> None:
    with _lock:
        _active.pop(env_id, None)


def get(env_id: str) -> "BaseEnvironment":
    with _lock:
        try:
            return _active[env_id]
        except KeyError:
            known = ", ".join(sorted(_active)) or "none"
            raise UnknownEnvironmentError(
                f"No active environment {env_id!r} (active: {known})."
            ) from None


def ids() -> list[str]:
    with _lock:
        return list(_active)


def active() -> list["BaseEnvironment"]:
    with _lock:
        return list(_active.values())


def cleanup_all(reason: str = "cleanup") -> int:
    """Stop every active environment; return how many were stopped."""
    with _lock:
        envs = list(_active.values())
    stopped = 0
    for env in envs:
        try:
            env.stop_container(reason)
            stopped += 1
        except Exception as exc:  # keep going: one failure must not leak the rest
            log.warning("rayfine: could not clean up %s: %s", env.id, exc)
    return stopped


def _install_exit_hooks() -> None:
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    atexit.register(cleanup_all, "exit")
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if signum is not None:
            _chain_signal(signum)


def _chain_signal(signum: int) -> None:
    previous = signal.getsignal(signum)

    def handler(sig: int, frame: Optional[Any]) -> None:
        cleanup_all("exit")
        if callable(previous):
            previous(sig, frame)
        elif previous != signal.SIG_IGN:
            signal.signal(sig, signal.SIG_DFL)
            signal.raise_signal(sig)

    signal.signal(signum, handler)
