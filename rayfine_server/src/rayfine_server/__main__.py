"""Run the server: ``python -m rayfine_server`` (settings from ``RAYFINE_*`` variables)."""

from __future__ import annotations

import logging
import sys

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

    sys.exit(run_server(config))


if __name__ == "__main__":
    main()
