"""Server settings, read once from ``RAYFINE_*`` environment variables at start-up."""

from __future__ import annotations

import json
import math
import os
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple

from .credentials import TokenError, take_token

DEFAULT_ENV_DIR = "/app"
DEFAULT_HOST = "0.0.0.0"
DEFAULT_PORT = 8000
DEFAULT_MAX_THREADS = 64
DEFAULT_MAX_CONNECTIONS = 1024
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
DEFAULT_SESSION_IDLE_TIMEOUT = 600.0
DEFAULT_LOG_LEVEL = "warning"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
HEADER_TIMEOUT = 10.0
"""Seconds a client has to send a request's head (and between pieces of its body)."""
# Clients keep pooled connections open between calls; a keep-alive shorter than
# the client's pool expiry makes it reuse a socket the server already closed.
KEEP_ALIVE_SECONDS = 75.0
EXIT_CONFIG = 78  # EX_CONFIG from sysexits.h: the container's settings are wrong


class ConfigError(ValueError):
    """An environment variable holds a value the server cannot use (exit code 78)."""


@dataclass(frozen=True)
class ServerConfig:
    """Everything the server needs to know before it imports env.py.

    :param env_dir: directory holding ``env.py``; put first on ``sys.path``.
    :param token: token every request must carry; ``None`` only when ``insecure``.
    :param insecure: ``RAYFINE_INSECURE_NO_TOKEN=1``: serve without a token.
    :param host: address to listen on when ``uds`` is not set.
    :param port: TCP port to listen on when ``uds`` is not set.
    :param uds: Unix socket path to listen on instead of TCP.
    :param max_threads: worker threads for sync methods, a hard limit.
    :param max_connections: open connections at most (clamped to the fd limit at start).
    :param max_body: request body cap in bytes.
    :param max_sessions: overrides ``Actor.max_sessions`` when set.
    :param session_idle_timeout: seconds before an idle session is closed.
    :param eager: construct the default Actor instance at start-up.
    :param log_level: the server's own log level name.
    :param app_command: proxy mode: the app's command line.
    :param app_port: proxy mode: the port the app listens on at 127.0.0.1.
    :param reload: re-import env.py when a file in ``env_dir`` changes.
    :param header_timeout: seconds to receive a request head (slow clients are dropped).
    :param idle_timeout: seconds an idle keep-alive connection stays open.
    """

    env_dir: Path = Path(DEFAULT_ENV_DIR)
    token: Optional[str] = field(default=None, repr=False)  # never shown in logs or reprs
    insecure: bool = False
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    uds: Optional[str] = None
    max_threads: int = DEFAULT_MAX_THREADS
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_body: int = DEFAULT_MAX_BODY_BYTES
    max_sessions: Optional[int] = None
    session_idle_timeout: float = DEFAULT_SESSION_IDLE_TIMEOUT
    eager: bool = False
    log_level: str = DEFAULT_LOG_LEVEL
    app_command: Optional[Tuple[str, ...]] = None
    app_port: int = DEFAULT_PORT
    reload: bool = False
    header_timeout: float = HEADER_TIMEOUT
    idle_timeout: float = KEEP_ALIVE_SECONDS

    @classmethod
    def from_environ(cls, environ: Optional[MutableMapping[str, str]] = None) -> ServerConfig:
        """Read ``RAYFINE_*`` variables and take the token out of the environment.

        The token file is unlinked and ``RAYFINE_TOKEN`` popped (see
        :mod:`credentials`) so that env.py, imported afterwards, cannot read them.

        :param environ: the mapping to read; ``os.environ`` when omitted.
        :raises ConfigError: a value is malformed, or there is no token and no
            ``RAYFINE_INSECURE_NO_TOKEN=1``.
        """
        env = os.environ if environ is None else environ
        insecure = _flag(env, "RAYFINE_INSECURE_NO_TOKEN")
        try:
            token = take_token(env)
        except TokenError as exc:
            raise ConfigError(str(exc)) from None
        if token is None and not insecure:
            raise ConfigError(
                "no token: set RAYFINE_TOKEN_FILE (a file holding the token) or RAYFINE_TOKEN;"
                " or RAYFINE_INSECURE_NO_TOKEN=1 to serve without one (development only)"
            )
        port = _int(env, "RAYFINE_PORT", DEFAULT_PORT, low=1, high=65535)
        config = cls(
            env_dir=Path(env.get("RAYFINE_ENV_DIR") or DEFAULT_ENV_DIR),
            token=token,
            insecure=insecure and token is None,
            host=env.get("RAYFINE_HOST") or DEFAULT_HOST,
            port=port,
            uds=env.get("RAYFINE_UDS") or None,
            max_threads=_int(env, "RAYFINE_MAX_THREADS", DEFAULT_MAX_THREADS),
            max_connections=_int(env, "RAYFINE_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS),
            max_body=_int(env, "RAYFINE_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
            max_sessions=_optional_int(env, "RAYFINE_MAX_SESSIONS"),
            session_idle_timeout=_seconds(
                env, "RAYFINE_SESSION_IDLE_TIMEOUT", DEFAULT_SESSION_IDLE_TIMEOUT
            ),
            eager=_flag(env, "RAYFINE_EAGER"),
            log_level=_log_level(env),
            app_command=_command(env),
            app_port=_int(env, "RAYFINE_APP_PORT", DEFAULT_PORT, low=1, high=65535),
            reload=_flag(env, "RAYFINE_RELOAD"),
        )
        if config.app_command and not config.uds and config.app_port == config.port:
            raise ConfigError(
                f"RAYFINE_PORT and RAYFINE_APP_PORT are both {port}: in proxy mode the app"
                " listens on 127.0.0.1:RAYFINE_APP_PORT, so the server needs another port"
                " (or RAYFINE_UDS)"
            )
        return config


def _flag(env: MutableMapping[str, str], name: str) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{name} must be 1 or 0, got {raw!r}")


def _log_level(env: MutableMapping[str, str]) -> str:
    """``RAYFINE_LOG_LEVEL`` lower-cased, checked against the logging level names."""
    level = (env.get("RAYFINE_LOG_LEVEL") or DEFAULT_LOG_LEVEL).lower()
    if level == "trace":  # uvicorn's extra level, accepted from older set-ups
        level = "debug"
    if level not in LOG_LEVELS:
        raise ConfigError(
            f"RAYFINE_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {level!r}"
        )
    return level


def _int(
    env: MutableMapping[str, str], name: str, default: int, low: int = 1, high: int = 2**62
) -> int:
    """Parse ``env[name]`` as an integer in ``[low, high]``, or return ``default`` when unset."""
    value = _optional_int(env, name, low, high)
    return default if value is None else value


def _optional_int(
    env: MutableMapping[str, str], name: str, low: int = 1, high: int = 2**62
) -> Optional[int]:
    raw = env.get(name)
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < low:
        raise ConfigError(f"{name} must be at least {low}, got {value}")
    if value > high:
        raise ConfigError(f"{name} must be at most {high}, got {value}")
    return value


def _seconds(env: MutableMapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a positive number of seconds, got {raw!r}")
    return value


def _command(env: MutableMapping[str, str]) -> Optional[Tuple[str, ...]]:
    raw = env.get("RAYFINE_APP_COMMAND")
    if not raw:
        return None
    try:
        command = json.loads(raw)
    except ValueError:
        command = None
    if not _is_argv(command):
        raise ConfigError(
            'RAYFINE_APP_COMMAND must be a JSON list of strings, e.g. ["uvicorn", "app:app"]'
        )
    return tuple(command)


def _is_argv(value: object) -> bool:
    items: List[object] = value if isinstance(value, list) else []
    return bool(items) and all(isinstance(item, str) and item for item in items)
