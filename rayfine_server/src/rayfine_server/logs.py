"""Where log lines go: the server's own at its level, env.py's at INFO by default.

env.py's ``print`` and ``logging.info`` are what an environment author reads
first when something is wrong, so they reach the container output without
any set-up: stdout is line-buffered, the root logger lets INFO through, and
records that find no handler go to stderr (``logging.lastResort``) at INFO
instead of WARNING.  An env.py that configures logging itself (say with
``logging.basicConfig``) gets exactly what it configured.
"""

from __future__ import annotations

import logging
import sys

SERVER_LOGGER = "rayfine_server"
_FORMAT = "%(levelname)s %(name)s: %(message)s"


def configure_logging(level_name: str) -> None:
    """Set up the server's logger (at ``level_name``) and env.py's defaults."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT))
    server = logging.getLogger(SERVER_LOGGER)
    server.handlers[:] = [handler]
    server.setLevel(level_name.upper())
    server.propagate = False  # independent of how env.py configures the root logger

    root = logging.getLogger()
    if not root.handlers and root.level == logging.WARNING:
        root.setLevel(logging.INFO)
    fallback = logging.StreamHandler(sys.stderr)
    fallback.setLevel(logging.INFO)
    fallback.setFormatter(logging.Formatter(_FORMAT))
    logging.lastResort = fallback
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(line_buffering=True)
            except (ValueError, OSError):  # e.g. a stream without a buffer
                pass
