"""The gateway behind ``rayfine serve``: environments on this host for clients on others.

``server`` is its HTTP/1.1 server, ``app`` the ASGI application behind it
(authentication, routes), ``proxy`` forwards calls to the containers, ``lifecycle`` starts,
stops and reaps, ``table`` records who owns what, ``tokens`` and ``policy``
say what each client may do, ``engine`` drives the runtime from the event
loop, ``images`` and ``unpack`` inspect and build, ``logstream`` follows
logs, ``audit`` records decisions, ``tls`` and ``serve`` run it all.
"""

from __future__ import annotations

from .app import Gateway
from .config import GatewayConfig

__all__ = ["Gateway", "GatewayConfig"]
