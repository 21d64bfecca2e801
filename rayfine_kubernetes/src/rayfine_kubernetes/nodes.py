"""Noticing a lost node within seconds, and keeping new pods off it.

A pod's status is written by its node's kubelet, so when the node dies the
status goes on saying "running" until the node controller gives up on the
node (40 s by default).  Asking the API server for one byte of the pod's log
makes it dial that kubelet: refused, unreachable or silent means the node
is gone, whatever the stale status says.  Nodes found dead are remembered
for a while and excluded when scheduling new pods (the scheduler itself
avoids them only once the node controller has tainted them).
"""

from __future__ import annotations

import threading
import time
from typing import Optional

from rayfine_core import errors

from .api import Kube, KubeError, path

REMEMBER = 120.0
"""Seconds a lost node stays excluded from scheduling."""
CACHE = 1.0
"""Seconds a verdict on a node is reused (many environments share a node)."""
PROBE_TIMEOUT = 3.0
_UNREACHABLE = (
    "dial tcp",
    "connection refused",
    "no route to host",
    "i/o timeout",
    "eof",
    "unreachable",
)


class Nodes:
    """Node liveness as seen from this process; thread-safe."""

    def __init__(self, kube: Kube) -> None:
        self._kube = kube
        self._lost: dict[str, float] = {}  # node -> monotonic time it was found lost
        self._verdicts: dict[str, tuple[float, bool]] = {}
        self._ready_since: dict[str, Optional[str]] = {}
        self._lock = threading.Lock()

    def recently_lost(self) -> list[str]:
        """Nodes to keep new pods off: found lost lately, and not seen back since."""
        now = time.monotonic()
        with self._lock:
            self._lost = {n: t for n, t in self._lost.items() if now - t < REMEMBER}
            candidates = list(self._lost)
        back = [node for node in candidates if self._is_back(node)]
        with self._lock:
            for node in back:
                self._lost.pop(node, None)
                self._verdicts.pop(node, None)
            return sorted(self._lost)

    def _is_back(self, node: str) -> bool:
        """The node's kubelet reported Ready after we found it lost (needs ``get nodes``)."""
        try:
            found = self._kube.request(
                "GET", path("api", "v1", "nodes", node), timeout=PROBE_TIMEOUT
            )
        except KubeError:
            return False  # no permission, or gone: the time limit decides
        for condition in (found.get("status") or {}).get("conditions") or ():
            if condition.get("type") == "Ready":
                since = self._ready_since.get(node)
                changed = since is not None and condition.get("lastTransitionTime") != since
                return condition.get("status") == "True" and changed
        return False

    def is_lost(self, namespace: str, pod: str, node: Optional[str]) -> bool:
        """Whether the node running ``pod`` stopped answering (checked at most once a second)."""
        if not node:
            return False
        now = time.monotonic()
        with self._lock:
            cached = self._verdicts.get(node)
            if cached and now - cached[0] < CACHE:
                return cached[1]
        lost = self._probe(namespace, pod)
        with self._lock:
            self._verdicts[node] = (time.monotonic(), lost)
            if lost and node not in self._lost:
                self._lost[node] = time.monotonic()
                self._ready_since[node] = self._ready_transition(node)
        return lost

    def _ready_transition(self, node: str) -> Optional[str]:
        """When the node's Ready condition last changed (to tell a later recovery), if readable."""
        try:
            found = self._kube.request(
                "GET", path("api", "v1", "nodes", node), timeout=PROBE_TIMEOUT
            )
        except (KubeError, errors.EngineUnavailableError):
            return None
        for condition in (found.get("status") or {}).get("conditions") or ():
            if condition.get("type") == "Ready":
                return str(condition.get("lastTransitionTime"))
        return None

    def _probe(self, namespace: str, pod: str) -> bool:
        log = path("api", "v1", "namespaces", namespace, "pods", pod, "log")
        try:
            self._kube.request_text(log, {"limitBytes": 1, "tailLines": 1}, timeout=PROBE_TIMEOUT)
        except KubeError as exc:
            # 400 (container not started), 404 (pod gone): the kubelet or the API server
            # answered for it. 5xx naming a failed dial: the kubelet is unreachable.
            text = exc.api_message.lower()
            return exc.status >= 500 and any(word in text for word in _UNREACHABLE)
        except errors.EngineUnavailableError:
            # Silence: the kubelet, or the API server itself? Ask the API server alone.
            self._kube.request("GET", "/version", timeout=PROBE_TIMEOUT)
            return True
        return False
