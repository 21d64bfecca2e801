"""Server settings, read once from environment variables at startup."""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

DEFAULT_ENV_DIR = "/app"
DEFAULT_HOST = "0.0.0.0"
DEFAULT_PORT = 8000
DEFAULT_MAX_THREADS = 64
DEFAULT_LOG_LEVEL = "warning"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")  # uvicorn's names
# Clients keep pooled connections open between calls; a keep-alive shorter than
# the client's pool expiry makes it reuse a socket the server already closed.
KEEP_ALIVE_SECONDS = 75
MAX_BODY_BYTES = 64 * 1024 * 1024


class ConfigError(ValueError):
    """An environment variable holds a value the server cannot use."""


@dataclass(frozen=True)
class ServerConfig:
    """Everything the server needs to know before it imports env.py.

    :param env_dir: directory holding ``env.py``; put first on ``sys.path``.
    :param token: bearer token every request must carry; ``None`` disables auth.
    :param host: address to listen on when ``uds`` is not set.
    :param port: TCP port to listen on when ``uds`` is not set.
    :param uds: Unix socket path to listen on instead of TCP.
    :param max_threads: how many sync methods may run in worker threads at once.
    :param log_level: uvicorn log level name.
    """

    env_dir: Path = Path(DEFAULT_ENV_DIR)
    token: Optional[str] = field(default=None, repr=False)  # never shown in logs or reprs
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    uds: Optional[str] = None
    max_threads: int = DEFAULT_MAX_THREADS
    log_level: str = DEFAULT_LOG_LEVEL

    @classmethod
    def from_environ(cls, environ: Optional[MutableMapping[str, str]] = None) -> ServerConfig:
        """Read ``RAYFINE_*`` variables, removing ``RAYFINE_TOKEN`` from ``environ``.

        The token is popped so that env.py, imported afterwards, can never read it.

        :param environ: the mapping to read; ``os.environ`` when omitted.
        :raises ConfigError: a number or log level is malformed or out of range.
        """
        env = os.environ if environ is None else environ
        token = env.pop("RAYFINE_TOKEN", None) or None
        return cls(
            env_dir=Path(env.get("RAYFINE_ENV_DIR") or DEFAULT_ENV_DIR),
            token=token,
            host=env.get("RAYFINE_HOST") or DEFAULT_HOST,
            port=_positive_int(env, "RAYFINE_PORT", DEFAULT_PORT),
            uds=env.get("RAYFINE_UDS") or None,
            max_threads=_positive_int(env, "RAYFINE_MAX_THREADS", DEFAULT_MAX_THREADS),
            log_level=_log_level(env),
        )


def _log_level(env: MutableMapping[str, str]) -> str:
    """``RAYFINE_LOG_LEVEL`` lower-cased, checked against uvicorn's level names."""
    level = (env.get("RAYFINE_LOG_LEVEL") or DEFAULT_LOG_LEVEL).lower()
    if level not in LOG_LEVELS:
        raise ConfigError(
            f"RAYFINE_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {level!r}"
        )
    return level


def _positive_int(env: MutableMapping[str, str], name: str, default: int) -> int:
    """Parse ``env[name]`` as an integer >= 1, or return ``default`` when unset."""
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < 1:
        raise ConfigError(f"{name} must be at least 1, got {value}")
    return value
