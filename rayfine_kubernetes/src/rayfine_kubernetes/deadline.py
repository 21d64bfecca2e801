"""The backstop: pods of a client that died are deleted by the cluster itself.

Each environment's pod belongs to a Job whose ``activeDeadlineSeconds``
starts at the lease window (``RAYFINE_K8S_LEASE_SECONDS``).  While this
process lives, a thread pushes every deadline forward; when the process is
SIGKILLed (or loses the API server for longer than the window) nothing
renews it, and Kubernetes' own Job controller, present in every cluster
since 1.0 and honouring deadline updates in 1.20, deletes the pod; the
pod's Secrets go with it (garbage collection of owned objects).  The Job
object stays, failed, holding no secret, until ``rayfine stop --orphans``
or (Kubernetes >= 1.21) its ``ttlSecondsAfterFinished`` removes it.

Deadlines are computed from this process's monotonic clock, never compared
with the cluster's: the new deadline is "the window, plus the time since
the Job was created", which never lands before "now + window" on the
cluster's clock whatever the skew.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Callable, Optional

from rayfine_core import errors

log = logging.getLogger("rayfine")

Renew = Callable[[str, str, int], None]
"""``renew(namespace, job, seconds)``: set the Job's activeDeadlineSeconds."""


class DeadlineKeeper:
    """Renews the deadlines of the Jobs this process started, from one thread."""

    def __init__(self, renew: Renew, window: int) -> None:
        self._renew = renew
        self._window = window
        self._jobs: dict[tuple[str, str], float] = {}  # (namespace, job) -> monotonic creation time
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._closed = False

    @property
    def interval(self) -> float:
        """Seconds between renewals: a quarter of the window, so three may fail in a row."""
        return max(1.0, self._window / 4)

    def track(self, namespace: str, job: str, created: float) -> None:
        """Keep renewing ``job`` (created at ``created``, ``time.monotonic()``) until untracked."""
        with self._lock:
            if self._closed:
                return
            self._jobs[(namespace, job)] = created
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="rayfine-k8s-deadlines", daemon=True
                )
                self._thread.start()

    def untrack(self, namespace: str, job: str) -> None:
        with self._lock:
            self._jobs.pop((namespace, job), None)

    def renew_all(self) -> None:
        """Push every tracked deadline forward now (the thread's work; public for tests)."""
        with self._lock:
            jobs = list(self._jobs.items())
        now = time.monotonic()
        for (namespace, job), created in jobs:
            seconds = self._window + math.ceil(now - created)
            try:
                self._renew(namespace, job, seconds)
            except errors.RayfineError as exc:
                # Not fatal yet: the window allows a few missed renewals.
                log.warning(
                    "rayfine: could not renew the deadline of %s/%s: %s", namespace, job, exc
                )

    def _run(self) -> None:
        while not self._wake.wait(self.interval):
            self.renew_all()

    def close(self) -> None:
        """Stop renewing (the environments' pods then live at most one more window)."""
        with self._lock:
            self._closed = True
            thread, self._thread = self._thread, None
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
