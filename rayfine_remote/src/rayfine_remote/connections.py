"""One :class:`RemoteRuntime` per gateway and token in a process, made on first use.

``load_env(mode="remote", url=..., token=...)`` may name several gateways
(or tokens) in one process; each pair gets its own runtime, so its leases,
connections and capabilities stay apart.  A forked child starts with none:
a runtime is never shared across processes.
"""

from __future__ import annotations

import hashlib
import os
import threading
from typing import Optional

from .runtime import RemoteRuntime
from .url import TOKEN_VARIABLE, URL_VARIABLE

_lock = threading.Lock()
_runtimes: dict[tuple[str, str], RemoteRuntime] = {}


def connect(url: Optional[str] = None, token: Optional[str] = None) -> RemoteRuntime:
    """The runtime for ``url`` and ``token`` (defaults: ``RAYFINE_REMOTE_URL`` / ``_TOKEN``).

    :raises ValidationError: no URL or token, or a malformed URL.
    """
    url = url or os.environ.get(URL_VARIABLE, "")
    token = token or os.environ.get(TOKEN_VARIABLE, "")
    key = (url, hashlib.sha256(token.encode()).hexdigest())  # the token itself is kept once
    with _lock:
        runtime = _runtimes.get(key)
        if runtime is None or runtime.closed:
            runtime = _runtimes[key] = RemoteRuntime(url, token)
        return runtime


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()
    _runtimes.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
