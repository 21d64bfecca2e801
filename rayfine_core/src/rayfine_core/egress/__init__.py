"""Environment egress: an allow-listed way out for containers that have no network.

The container runs with no network device.  A forwarder inside it listens on
127.0.0.1:3128 (``HTTP(S)_PROXY`` point there) and pipes each connection
to a Unix socket in the environment's run dir; on the host,
:class:`EgressProxy` reads the HTTP CONNECT or absolute-URI request,
checks the target against the environment's :class:`EgressPolicy`,
resolves it on the host, refuses internal addresses, and relays bytes.
See README.md in this directory for what each choice lets out.
"""

from __future__ import annotations

from .attach import (
    CONTAINER_SOCKET,
    FORWARD_PORT,
    SOCKET_NAME,
    EgressAttachment,
    attach,
    container_env,
    default_proxy,
    spawn_server,
)
from .limits import ProxyLimits
from .policy import EgressPolicy
from .proxy import EgressProxy
from .resolver import ResolveError, Resolver, StaticResolver, SystemResolver
from .stats import EgressStats

__all__ = [
    "CONTAINER_SOCKET",
    "FORWARD_PORT",
    "SOCKET_NAME",
    "EgressAttachment",
    "EgressPolicy",
    "EgressProxy",
    "EgressStats",
    "ProxyLimits",
    "ResolveError",
    "Resolver",
    "StaticResolver",
    "SystemResolver",
    "attach",
    "container_env",
    "default_proxy",
    "spawn_server",
]
