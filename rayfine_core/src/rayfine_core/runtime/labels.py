"""Label keys Rayfine puts on images and containers.

Cleanup only ever touches containers carrying ``OWNER`` = ``"rayfine"`` and,
when it acts for one runtime, ``RUNTIME`` = that runtime's name.
"""

from __future__ import annotations

OWNER = "rayfine.owner"
OWNER_VALUE = "rayfine"
ENV_TYPE = "rayfine.env_type"
CONTENT_HASH = "rayfine.content_hash"
SERVER_PORT = "rayfine.server_port"
PID = "rayfine.pid"
"""Process id of the client that started the container (for reaping orphans)."""
HOST = "rayfine.host"
"""Hostname of that client (a pid means nothing on another host)."""
PROCESS_START = "rayfine.process_start"
"""Start time of that client process, so a reused pid is not mistaken for it."""
SERVED = "rayfine.served"
"""``"1"`` on an image whose command is Rayfine's server (for http-based apps: in proxy mode
before the app), so the client talks to it with a token over the run directory."""
ENV_ID = "rayfine.env_id"
RUNTIME = "rayfine.runtime"
"""Name of the runtime that started the container: runtimes sharing one engine tell theirs apart."""
DETACHED = "rayfine.detached"
"""``"1"`` on a container meant to outlive the process that started it (``rayfine run``,
:meth:`~rayfine_core.environment.BaseEnvironment.detach`): never reap it as an orphan."""
