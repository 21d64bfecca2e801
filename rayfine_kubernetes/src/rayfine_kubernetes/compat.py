"""Bridges to the runtime contract while ``rayfine_core`` is being redesigned (temporary).

The contract (RUNTIME-CONTRACT.md) adds ``Capabilities``, ``TLSConfig``,
``Endpoint.scheme/path_prefix/headers/tls`` and ``StartRequest.token/user/
options/isolation/run_dir``.  Until the core has them, this module supplies
the same names: the runtime reads requests and builds endpoints only through
it, so deleting the fallbacks is the whole migration.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from rayfine_core import Endpoint, StartRequest

DEFAULT_USER = "10001:10001"
"""The contract's default ``StartRequest.user``."""

try:  # the contract's types, once the core has them
    from rayfine_core import Capabilities  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on the core's version

    @dataclass(frozen=True)
    class Capabilities:  # type: ignore[no-redef]
        """What a runtime can do (the contract's fields; see RUNTIME-CONTRACT.md)."""

        unix_socket: bool = True
        host_ports: bool = True
        network_none: bool = True
        memory_limit: bool = True
        cpu_quota: bool = True
        pids_limit: bool = True
        oom_flag: bool = True
        follow_logs: bool = True
        builds: bool = True
        user: bool = True
        isolation: frozenset = frozenset({"container"})
        local_host: bool = True
        engine_restartable: bool = False


try:
    from rayfine_core import TLSConfig  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on the core's version

    @dataclass(frozen=True)
    class TLSConfig:  # type: ignore[no-redef]
        """TLS settings of an endpoint (the contract's fields)."""

        ca_data: Optional[str] = None
        ca_file: Optional[str] = None
        cert_file: Optional[str] = None
        key_file: Optional[str] = None
        server_hostname: Optional[str] = None
        pin_sha256: Optional[str] = None
        verify: bool = True


def capabilities(**wanted: Any) -> Capabilities:
    """:class:`Capabilities` with the fields this core knows (their names still move)."""
    known = {f.name for f in dataclasses.fields(Capabilities)}
    return Capabilities(**{k: v for k, v in wanted.items() if k in known})


_ENDPOINT_FIELDS = {f.name for f in dataclasses.fields(Endpoint)}
CLIENT_SPEAKS_PROXY = {"scheme", "path_prefix", "headers", "tls"} <= _ENDPOINT_FIELDS
"""Whether the core's client can go through the API server (path prefix, headers, TLS)."""


def make_endpoint(**fields: Any) -> Endpoint:
    """An :class:`Endpoint` with the contract's fields (only the core's own, if it lacks them)."""
    if not CLIENT_SPEAKS_PROXY:
        fields = {key: value for key, value in fields.items() if key in _ENDPOINT_FIELDS}
    return Endpoint(**fields)


def token(request: StartRequest) -> Optional[str]:
    """The server's token: ``request.token``, or (today's core) ``RAYFINE_TOKEN`` in its env."""
    value = getattr(request, "token", None)
    return value if value else request.env.get("RAYFINE_TOKEN") or None


def user(request: StartRequest) -> Optional[str]:
    """``uid:gid`` the server runs as (None: the image's user)."""
    return getattr(request, "user", DEFAULT_USER)


def options(request: StartRequest) -> Mapping[str, Any]:
    """Runtime-specific passthrough (``namespace``, ``node_selector``, ``tolerations``, ...)."""
    value = getattr(request, "options", None)
    return value if isinstance(value, Mapping) else {}


def isolation(request: StartRequest) -> str:
    return str(getattr(request, "isolation", "container") or "container")
