"""The audit log: one JSON line per decision of the gateway, never a secret.

Each line has ``time``, ``event`` and what the event concerns: the client's
*name* (never its token), the environment id, the image, the peer address,
the outcome.  Environment variables appear as a count, never by value.
Refused authentications are logged at most :data:`AUTH_LINES_PER_WINDOW`
times per :data:`AUTH_WINDOW` seconds (then one line says how many were
left out), so a flood of bad tokens cannot flood the log.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any, Optional

AUTH_WINDOW = 10.0
AUTH_LINES_PER_WINDOW = 20


class Audit:
    """Writes audit lines to a file (appended, mode 0600) or to stderr."""

    def __init__(self, path: Optional[Path] = None) -> None:
        self._file: IO[str]
        if path is None:
            self._file = sys.stderr
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600, exist_ok=True)
            self._file = open(path, "a", buffering=1)  # noqa: SIM115 - open for the log's life
        self._lock = threading.Lock()
        self._window_start = 0.0
        self._window_count = 0
        self._dropped = 0

    def log(self, event: str, **fields: Any) -> None:
        line = json.dumps({"time": round(time.time(), 3), "event": event, **fields}, default=str)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()

    def refused(self, peer: str, reason: str) -> None:
        """A request without a valid token (rate-limited)."""
        now = time.monotonic()
        if now - self._window_start > AUTH_WINDOW:
            if self._dropped:
                self.log("auth_refused_dropped", count=self._dropped, window_s=AUTH_WINDOW)
            self._window_start, self._window_count, self._dropped = now, 0, 0
        if self._window_count >= AUTH_LINES_PER_WINDOW:
            self._dropped += 1
            return
        self._window_count += 1
        self.log("auth_refused", peer=peer, reason=reason)

    def close(self) -> None:
        if self._file is not sys.stderr:
            self._file.close()
