"""Every environment this process owns, so none outlives it.

An environment joins the registry *before* the engine is asked for its
container and leaves it once its container is gone (or it was detached).
What is still here is stopped:

* at interpreter exit (the plugin manager runs :func:`stop_all` before it
  closes the runtimes), and when ``cleanup_all_environments()`` is called;
* on SIGTERM and SIGHUP when the process has no handler of its own for
  them: Rayfine's handler stops everything, then lets the signal do what it
  would have done (terminate).  A handler the application installed, before
  or after Rayfine, is never pre-empted: it runs instead, and if it exits the
  process, the exit stops everything.  The handlers are installed from the
  main thread when this module is first imported (a signal handler can only
  be set there), so environments loaded from worker threads are covered too.

Ownership is per process: a forked child starts with an empty registry, so
it never stops its parent's environments (it may still call them).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING, Optional

from ..errors import EnvironmentClosedError, UnknownEnvironmentError
from ..plugins.manager import get_manager, interpreter_exiting

if TYPE_CHECKING:
    from .life import Life

log = logging.getLogger("rayfine")
_lock = threading.RLock()  # re-entrant: the signal handler may interrupt its holder
_active: dict[str, Life] = {}
_exiting = False  # set when the exit stop begins: from then on nothing new may start
SIGNALS = tuple(
    sig for sig in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if sig
)


def add(life: Life) -> None:
    """Track a starting environment, so that exit and signals stop it.

    :raises EnvironmentClosedError: the process is exiting (its exit stop has begun); a
        start now would leave a container behind.
    """
    with _lock:
        if _exiting:
            raise EnvironmentClosedError(
                "This process is exiting (interpreter exit or a signal): it starts no more"
                " environments."
            )
        _active[life.env_id] = life
    get_manager().before_shutdown(_stop_at_exit)
    install_signal_handlers()


def discard(env_id: str) -> None:
    with _lock:
        _active.pop(env_id, None)


def get(env_id: str) -> Life:
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


def active() -> list[Life]:
    with _lock:
        return list(_active.values())


def stop_all(reason: str = "cleanup") -> int:
    """Stop every registered environment; return how many stopped (failures are logged and kept).

    With ``reason="exit"`` no environment may start afterwards (:func:`add` refuses), so a
    thread still starting one cannot leave it behind.
    """
    global _exiting
    stopped = 0
    with _lock:
        if reason == "exit":
            _exiting = True
        lives = list(_active.values())
    for life in lives:
        try:
            life.stop_blocking(reason)
            stopped += 1
        except Exception as exc:  # keep going: one failure must not leak the rest
            log.warning("rayfine: could not clean up %s: %s", life.env_id, exc)
    return stopped


def _stop_at_exit() -> None:
    # The manager also shuts down when tests reset it: only a real exit closes the gate.
    stop_all("exit" if interpreter_exiting() else "cleanup")


# -- signals ---------------------------------------------------------------------------------


def install_signal_handlers() -> None:
    """Stop environments on SIGTERM/SIGHUP where nothing else handles them (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in SIGNALS:
        try:
            if signal.getsignal(signum) is signal.SIG_DFL:
                signal.signal(signum, _on_signal)
        except (ValueError, OSError):  # not the main interpreter, or an embedded one
            return


def _on_signal(signum: int, frame: Optional[FrameType]) -> None:
    """Stop every environment, then die of the signal as the default action would."""
    try:
        stop_all("exit")
    finally:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


# -- fork ------------------------------------------------------------------------------------


def _after_fork_in_child() -> None:
    global _lock, _exiting
    _lock = threading.RLock()  # a parent thread may have held it at fork time
    _active.clear()
    _exiting = False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
install_signal_handlers()
