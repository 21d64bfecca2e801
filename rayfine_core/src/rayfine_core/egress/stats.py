"""Count and log the egress proxy's decisions, per environment.

A log line names the environment, the target host and port, the decision
and its reason: never the path, headers or bodies.  Host names come from
untrusted code, so they are escaped and shortened before they reach a log,
and each environment's lines are rate-limited so that a loop of refused
connections cannot flood the log (the counters still count every one).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from typing import Optional

logger = logging.getLogger("rayfine.egress")

LOG_BURST = 50
LOG_PER_SECOND = 5.0


@dataclass(frozen=True)
class EgressStats:
    """A snapshot of one environment's egress.

    ``allowed``: connections the policy let through and that reached their
    target; ``denied``: refused by the policy or as malformed; ``failed``:
    allowed but the name did not resolve or the target did not answer;
    ``bytes_out`` / ``bytes_in``: relayed to / from targets; ``active``: open now.
    """

    allowed: int = 0
    denied: int = 0
    failed: int = 0
    bytes_out: int = 0
    bytes_in: int = 0
    active: int = 0


def printable(text: str, limit: int = 120) -> str:
    """``text`` safe for a log line: non-printable characters escaped, at most ``limit`` long."""
    safe = text.encode("ascii", "backslashreplace").decode("ascii")
    safe = "".join(c if " " < c < "\x7f" else f"\\x{ord(c):02x}" for c in safe)
    return safe if len(safe) <= limit else safe[: limit - 3] + "..."


class EnvCounters:
    """Mutable counters and a log rate limiter for one environment (thread-safe)."""

    def __init__(self, env_id: str) -> None:
        self.env_id = env_id
        self._lock = threading.Lock()
        self._stats = EgressStats()
        self._tokens = float(LOG_BURST)
        self._refilled = time.monotonic()
        self._suppressed = 0

    def snapshot(self) -> EgressStats:
        with self._lock:
            return self._stats

    def opened(self) -> None:
        self._add(active=1)

    def closed(self) -> None:
        self._add(active=-1)

    def transferred(self, bytes_out: int, bytes_in: int) -> None:
        self._add(bytes_out=bytes_out, bytes_in=bytes_in)

    def decided(self, decision: str, host: str, port: int, reason: str) -> None:
        """Count one decision (``allow``, ``deny`` or ``fail``) and log it if the rate allows."""
        field = {"allow": "allowed", "deny": "denied", "fail": "failed"}[decision]
        self._add(**{field: 1})
        level = logging.INFO if decision == "allow" else logging.WARNING
        if not logger.isEnabledFor(level):
            return
        suppressed = self._take_token()
        if suppressed is None:
            return
        extra = f" ({suppressed} earlier lines suppressed)" if suppressed else ""
        logger.log(
            level,
            "egress env=%s decision=%s host=%s port=%d reason=%s%s",
            printable(self.env_id, 64),
            decision,
            printable(host),
            port,
            reason,
            extra,
        )

    def _add(self, **deltas: int) -> None:
        with self._lock:
            self._stats = replace(
                self._stats, **{k: getattr(self._stats, k) + v for k, v in deltas.items()}
            )

    def _take_token(self) -> Optional[int]:
        """None if this line must be dropped; else how many were dropped before it."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(LOG_BURST, self._tokens + (now - self._refilled) * LOG_PER_SECOND)
            self._refilled = now
            if self._tokens < 1:
                self._suppressed += 1
                return None
            self._tokens -= 1
            dropped, self._suppressed = self._suppressed, 0
            return dropped
