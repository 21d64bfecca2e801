"""Many environments of one image: warm pools (one handed out at a time) and replica sets.

* :class:`~.faces.Pool` / :class:`~.faces.AsyncPool` keep ``size`` environments
  started and idle; ``acquire()`` (or ``with pool.env()``) hands one out at
  once, checked to answer, and the pool starts its replacement; ``release()``
  stops it (a fresh environment per episode) or, with ``reset=``, resets and
  reuses it.
* :class:`~.faces.Replicas` / :class:`~.faces.AsyncReplicas` look like one
  environment and spread its calls over ``replicas`` containers.

Both are a :class:`~.fleet.Fleet` (members, a keeper thread that starts,
checks, replaces and stops them, status, progress) plus a policy
(:mod:`~.warm`, :mod:`~.replicas`).  This package sits above
:mod:`~rayfine_core.environment`; nothing below imports it.  The public
functions are ``rayfine_core.load_pool`` / ``aload_pool`` / ``load_replicas``
/ ``aload_replicas``.
"""

from __future__ import annotations

from .faces import AsyncPool, AsyncReplicas, Opening, Pool, Replicas
from .members import PoolStatus
from .progress import Progress, ProgressCallback
from .settings import KIND_LABEL, POOL_LABEL

__all__ = [
    "KIND_LABEL",
    "POOL_LABEL",
    "AsyncPool",
    "AsyncReplicas",
    "Opening",
    "Pool",
    "PoolStatus",
    "Progress",
    "ProgressCallback",
    "Replicas",
]
