"""Many environments of one image: warm pools (one handed out at a time) and replica sets.

* :class:`~.warm_faces.Pool` / :class:`~.warm_faces.AsyncPool` keep ``size`` environments
  started and idle; ``acquire()`` (or ``with pool.env()``) hands one out at
  once, checked to answer, and the pool starts its replacement; ``release()``
  stops it (a fresh environment per episode) or, with ``reset=``, resets and
  reuses it.
* :class:`~.replica_faces.Replicas` / :class:`~.replica_faces.AsyncReplicas` look like one
  environment and spread its calls over ``replicas`` containers.

Both are a :class:`~.fleet.Fleet` (members, status, progress; its
:class:`~.keeper.Keeper` thread starts, checks, replaces and stops them)
plus a policy (:mod:`~.warm`, :mod:`~.replicas`).  This package sits above
:mod:`~rayfine_core.environment`; nothing below imports it.  The public
functions are ``rayfine_core.load_pool`` / ``aload_pool`` / ``load_replicas``
/ ``aload_replicas``.
"""

from __future__ import annotations

from .faces import Opening
from .members import PoolStatus
from .progress import Progress, ProgressCallback
from .replica_faces import AsyncReplicas, Replicas
from .settings import KIND_LABEL, POOL_LABEL
from .warm_faces import AsyncPool, Pool

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
