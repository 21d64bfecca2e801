"""Reading ``RAYFINE_*`` settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from rayfine_server.config import ConfigError, ServerConfig


def test_defaults():
    environ: dict = {}
    config = ServerConfig.from_environ(environ)
    assert config == ServerConfig(
        env_dir=Path("/app"),
        token=None,
        host="0.0.0.0",
        port=8000,
        uds=None,
        max_threads=64,
        log_level="warning",
    )


def test_everything_set_and_token_popped():
    environ = {
        "RAYFINE_ENV_DIR": "/srv/env",
        "RAYFINE_TOKEN": "t",
        "RAYFINE_HOST": "127.0.0.1",
        "RAYFINE_PORT": "9000",
        "RAYFINE_UDS": "/run/rf/s.sock",
        "RAYFINE_MAX_THREADS": "4",
        "RAYFINE_LOG_LEVEL": "INFO",
        "UNRELATED": "kept",
    }
    config = ServerConfig.from_environ(environ)
    assert (config.env_dir, config.token, config.host, config.port) == (
        Path("/srv/env"),
        "t",
        "127.0.0.1",
        9000,
    )
    assert (config.uds, config.max_threads, config.log_level) == ("/run/rf/s.sock", 4, "info")
    assert "RAYFINE_TOKEN" not in environ and environ["UNRELATED"] == "kept"


def test_token_never_appears_in_repr():
    assert "hunter2" not in repr(ServerConfig(token="hunter2"))


def test_empty_values_mean_default():
    config = ServerConfig.from_environ({"RAYFINE_TOKEN": "", "RAYFINE_UDS": "", "RAYFINE_PORT": ""})
    assert (config.token, config.uds, config.port) == (None, None, 8000)


@pytest.mark.parametrize(
    "name, value, fragment",
    [
        ("RAYFINE_PORT", "http", "must be an integer"),
        ("RAYFINE_MAX_THREADS", "0", "at least 1"),
        ("RAYFINE_LOG_LEVEL", "loud", "must be one of critical"),
    ],
)
def test_bad_numbers_are_refused(name, value, fragment):
    with pytest.raises(ConfigError, match=fragment):
        ServerConfig.from_environ({name: value})
