"""Bounds on what one environment can make the egress proxy do."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProxyLimits:
    """Bounds on what one environment can make the proxy do.

    :param max_connections: open connections per environment; more are refused (503).
    :param max_total_connections: open connections over all environments of this proxy.
    :param head_timeout: seconds for the request head, and for a TLS ClientHello once begun.
    :param connect_timeout: seconds to connect to the target, all its addresses together.
    :param idle_timeout: a connection with no byte in either direction for this long is closed.
    :param max_head_bytes: request line and headers together; more is refused (431).
    """

    max_connections: int = 64
    max_total_connections: int = 1024
    head_timeout: float = 10.0
    connect_timeout: float = 10.0
    idle_timeout: float = 300.0
    max_head_bytes: int = 16 * 1024
