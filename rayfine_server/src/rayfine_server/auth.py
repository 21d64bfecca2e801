"""Who may talk to the server: the token check, and a log of refusals that cannot flood.

The token travels as ``Authorization: Bearer <token>`` or, for proxies that
keep the Authorization header for themselves (the Kubernetes API server's pod
proxy), as ``X-Rayfine-Token: <token>``.  Comparisons are constant-time.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections import Counter
from typing import Optional

from .httpparse import RequestHead

logger = logging.getLogger("rayfine_server.refused")

LOG_INTERVAL = 10.0
"""At most one summary line of refused requests per this many seconds."""


class TokenCheck:
    """Whether a request carries the token.

    :param token: the expected token; ``None`` accepts everything (only with
        ``RAYFINE_INSECURE_NO_TOKEN=1``).
    """

    def __init__(self, token: Optional[str]) -> None:
        self._token = token.encode("utf-8") if token is not None else None

    def __call__(self, head: RequestHead) -> bool:
        expected = self._token
        if expected is None:
            return True
        headers = head.headers
        direct = headers.get("x-rayfine-token")
        if direct is not None and hmac.compare_digest(direct.strip().encode("latin-1"), expected):
            return True
        authorization = headers.get("authorization")
        if authorization is None:
            return False
        scheme, _, credentials = authorization.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            credentials.strip().encode("latin-1"), expected
        )


class RefusalLog:
    """Counts refused requests and logs them as one summary line per interval.

    Refusals happen before the client is known to be legitimate, so logging
    each one would let anyone who can connect fill the container's log.
    """

    def __init__(self, interval: float = LOG_INTERVAL) -> None:
        self._interval = interval
        self._counts: Counter = Counter()
        self._last_peer = ""
        self._next_log = 0.0

    def note(self, what: str, peer: str) -> None:
        """Record one refusal (``what`` names the reason); log if the interval has passed."""
        self._counts[what] += 1
        self._last_peer = peer
        self.tick()

    def tick(self) -> None:
        """Log the counts if the interval has passed (the server calls this every second)."""
        now = time.monotonic()
        if now >= self._next_log:
            self.flush(now)

    def flush(self, now: Optional[float] = None) -> None:
        """Log what was counted since the last line, if anything."""
        if not self._counts:
            return
        total = sum(self._counts.values())
        reasons = ", ".join(f"{count} {what}" for what, count in sorted(self._counts.items()))
        logger.warning(
            "Refused %d request(s) since the last report (%s); the last from %s",
            total,
            reasons,
            self._last_peer,
        )
        self._counts.clear()
        self._next_log = (time.monotonic() if now is None else now) + self._interval
