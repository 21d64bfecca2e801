"""Keeping this process's remote environments alive: one heartbeat for all of them.

The gateway stops an environment whose client has not been heard from for
its lease time (the client was killed, its host died, the network broke).
While this process lives, a daemon thread renews the leases of every
environment it started, a few times per lease, in one request.  A
heartbeat that fails is retried at the next tick; the environments are lost
only if the gateway hears nothing for a whole lease.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Callable, Optional

from rayfine_core import errors

log = logging.getLogger("rayfine")
BEATS_PER_LEASE = 4


class LeaseKeeper:
    """Renews the leases of a set of environment ids from a daemon thread.

    :param send: sends one heartbeat body and returns the gateway's answer.
    """

    def __init__(self, send: Callable[[bytes], dict]) -> None:
        self._send = send
        self._ids: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._every = 15.0
        self._thread: Optional[threading.Thread] = None
        self._closed = False

    def add(self, env_id: str, lease_timeout: float) -> None:
        """Keep ``env_id`` alive from now on (the gateway's lease is ``lease_timeout`` s)."""
        with self._lock:
            self._ids.add(env_id)
            self._every = min(self._every, max(lease_timeout / BEATS_PER_LEASE, 0.05))
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(
                    target=self._run, name="rayfine-remote-lease", daemon=True
                )
                self._thread.start()

    def discard(self, env_id: str) -> None:
        with self._lock:
            self._ids.discard(env_id)

    def _run(self) -> None:
        while not self._wake.wait(self._every):
            with self._lock:
                ids = sorted(self._ids)
            if ids:
                self.beat(ids)

    def beat(self, ids: list[str]) -> None:
        """Renew ``ids`` now; forget those the gateway no longer knows."""
        try:
            answer = self._send(json.dumps({"ids": ids}).encode())
        except errors.RayfineError as exc:  # retried at the next tick
            log.debug("rayfine: remote heartbeat failed: %s", exc)
            return
        unknown = answer.get("unknown") if isinstance(answer, dict) else None
        for env_id in unknown or ():
            self.discard(str(env_id))

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._wake.set()
