"""Run the server: ``python -m rayfine_server`` (settings from ``RAYFINE_*`` variables)."""

from __future__ import annotations

import logging
import os
import stat
import sys
from typing import Any, Dict

from .config import KEEP_ALIVE_SECONDS, ConfigError, ServerConfig


def main() -> None:
    """Read the configuration, import env.py and serve it until stopped."""
    try:
        # Before anything imports env.py: this removes RAYFINE_TOKEN from os.environ.
        config = ServerConfig.from_environ()
    except ConfigError as exc:
        sys.exit(f"rayfine-server: {exc}")
    _configure_logging(config.log_level)

    from .app import create_app

    app = create_app(config)
    _serve(app, config)


def _configure_logging(level_name: str) -> None:
    """Send the server's own messages (e.g. env.py import failures) to stderr."""
    level = logging.getLevelName(level_name.upper())
    logging.basicConfig(
        level=level if isinstance(level, int) else logging.DEBUG,  # uvicorn's "trace"
        format="%(levelname)s:     %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _serve(app: Any, config: ServerConfig) -> None:
    """Run uvicorn on the Unix socket if one is configured, else on TCP."""
    import uvicorn

    options: Dict[str, Any] = {
        "log_level": config.log_level,
        "access_log": False,
        "timeout_keep_alive": KEEP_ALIVE_SECONDS,
        # Explicit, so that uvloop/httptools pulled in by env.py's own
        # requirements never change the server's behaviour.
        "loop": "asyncio",
        "http": "h11",
        "lifespan": "off",
    }
    if config.uds:
        _prepare_socket_path(config.uds)
        uvicorn.run(app, uds=config.uds, **options)
    else:
        uvicorn.run(app, host=config.host, port=config.port, **options)


def _prepare_socket_path(path: str) -> None:
    """Create the socket's directory and remove a socket left by an earlier run.

    Removing it also matters for permissions: uvicorn keeps an existing
    file's mode but makes a new socket 0o666, so any local client can connect.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass


if __name__ == "__main__":
    main()
