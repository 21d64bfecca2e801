"""Rayfine's remote mode: environments on a gateway of another host, called as if local.

Client side: the ``remote`` runtime (:mod:`.runtime`), chosen by
``load_env(image, mode="remote", url=..., token=...)``; it needs only the
core.  Server side: the gateway (:mod:`.gateway`), started by ``rayfine
serve`` on a host with a container runtime; it needs the ``gateway`` extra.
:mod:`.messages` is the JSON both sides exchange.
"""

from __future__ import annotations

from .connections import connect
from .errors import GatewayAuthError, PolicyError, QuotaExceededError
from .runtime import RemoteRuntime

__all__ = ["GatewayAuthError", "PolicyError", "QuotaExceededError", "RemoteRuntime", "connect"]
