"""Run the server: ``python -m rayfine_server`` (settings from ``RAYFINE_*`` variables)."""

from __future__ import annotations

import logging
import os
import sys
import threading

from .config import EXIT_CONFIG, ConfigError, ServerConfig
from .logs import configure_logging

logger = logging.getLogger("rayfine_server")


def main() -> None:
    """Read the configuration, take the token, import env.py (or start the app), serve."""
    try:
        # Before anything imports env.py: this removes the token from the environment.
        config = ServerConfig.from_environ()
    except ConfigError as exc:
        sys.stderr.write(f"rayfine-server: {exc}\n")
        sys.exit(EXIT_CONFIG)
    configure_logging(config.log_level)
    if config.insecure:
        logger.warning(
            "RAYFINE_INSECURE_NO_TOKEN=1: serving WITHOUT a token. Anyone who can reach"
            " this server can run env.py's code. Use this for local development only."
        )
    from .run import run_server

    _exit(run_server(config))


def _exit(code: int) -> None:
    """Exit with ``code``, even if env.py left non-daemon threads running.

    Python would wait for them forever, and a container told to stop would
    only end when the engine kills it.
    """
    lingering = [
        t.name
        for t in threading.enumerate()
        if t is not threading.main_thread() and not t.daemon and t.is_alive()
    ]
    if lingering:
        logger.warning("Exiting without waiting for env.py's threads: %s", ", ".join(lingering))
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    main()
