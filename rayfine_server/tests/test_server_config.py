"""Reading ``RAYFINE_*`` settings, and taking the token out of the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rayfine_server.config import ConfigError, ServerConfig


def test_defaults_with_a_token():
    environ = {"RAYFINE_TOKEN": "t"}
    config = ServerConfig.from_environ(environ)
    assert config == ServerConfig(
        env_dir=Path("/app"),
        token="t",
        host="0.0.0.0",
        port=8000,
        uds=None,
        max_threads=64,
        max_connections=1024,
        max_body=64 * 1024 * 1024,
        max_sessions=None,
        session_idle_timeout=600.0,
        log_level="warning",
    )


def test_no_token_refuses_to_start_unless_insecure():
    """With no token the old server served everything unauthenticated on 0.0.0.0:8000."""
    with pytest.raises(ConfigError, match="RAYFINE_TOKEN_FILE"):
        ServerConfig.from_environ({})
    with pytest.raises(ConfigError, match="RAYFINE_INSECURE_NO_TOKEN=1"):
        ServerConfig.from_environ({"RAYFINE_TOKEN": ""})
    config = ServerConfig.from_environ({"RAYFINE_INSECURE_NO_TOKEN": "1"})
    assert (config.token, config.insecure) == (None, True)


def test_everything_set_and_token_popped():
    environ = {
        "RAYFINE_ENV_DIR": "/srv/env",
        "RAYFINE_TOKEN": "t",
        "RAYFINE_HOST": "127.0.0.1",
        "RAYFINE_PORT": "9000",
        "RAYFINE_UDS": "/run/rf/s.sock",
        "RAYFINE_MAX_THREADS": "4",
        "RAYFINE_MAX_CONNECTIONS": "50",
        "RAYFINE_MAX_BODY_BYTES": "1000",
        "RAYFINE_MAX_SESSIONS": "7",
        "RAYFINE_SESSION_IDLE_TIMEOUT": "2.5",
        "RAYFINE_EAGER": "1",
        "RAYFINE_RELOAD": "true",
        "RAYFINE_LOG_LEVEL": "INFO",
        "RAYFINE_APP_COMMAND": '["python3", "-m", "http.server"]',
        "RAYFINE_APP_PORT": "9001",
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
    assert (config.max_connections, config.max_body, config.max_sessions) == (50, 1000, 7)
    assert (config.session_idle_timeout, config.eager, config.reload) == (2.5, True, True)
    assert (config.app_command, config.app_port) == (("python3", "-m", "http.server"), 9001)
    assert "RAYFINE_TOKEN" not in environ and environ["UNRELATED"] == "kept"


def test_token_file_is_read_and_removed(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("from-a-file\n")
    environ = {"RAYFINE_TOKEN_FILE": str(token_file), "RAYFINE_TOKEN": "legacy"}
    config = ServerConfig.from_environ(environ)
    assert config.token == "from-a-file"
    assert not token_file.exists()
    assert "RAYFINE_TOKEN" not in environ


def test_token_file_that_cannot_be_removed_is_still_used(tmp_path):
    """A read-only secret volume: reading works, unlinking fails with EACCES/EROFS."""
    secrets_dir = tmp_path / "secret"
    secrets_dir.mkdir()
    (secrets_dir / "token").write_text("ro-token")
    secrets_dir.chmod(0o555)
    try:
        environ = {"RAYFINE_TOKEN_FILE": str(secrets_dir / "token")}
        if os.geteuid() == 0:  # root may unlink anyway; then it is simply gone
            assert ServerConfig.from_environ(environ).token == "ro-token"
        else:
            assert ServerConfig.from_environ(environ).token == "ro-token"
            assert (secrets_dir / "token").exists()
    finally:
        secrets_dir.chmod(0o755)


@pytest.mark.parametrize("content", ["", "  \n"])
def test_empty_or_missing_token_file_is_a_config_error(tmp_path, content):
    missing = {"RAYFINE_TOKEN_FILE": str(tmp_path / "nope")}
    with pytest.raises(ConfigError, match="cannot read the token"):
        ServerConfig.from_environ(missing)
    (tmp_path / "empty").write_text(content)
    with pytest.raises(ConfigError, match="is empty"):
        ServerConfig.from_environ({"RAYFINE_TOKEN_FILE": str(tmp_path / "empty")})


def test_token_never_appears_in_repr():
    assert "hunter2" not in repr(ServerConfig(token="hunter2"))


def test_empty_values_mean_default():
    config = ServerConfig.from_environ(
        {"RAYFINE_TOKEN": "t", "RAYFINE_UDS": "", "RAYFINE_PORT": ""}
    )
    assert (config.uds, config.port) == (None, 8000)


@pytest.mark.parametrize(
    "name, value, fragment",
    [
        ("RAYFINE_PORT", "http", "must be an integer"),
        ("RAYFINE_PORT", "70000", "at most 65535"),
        ("RAYFINE_MAX_THREADS", "0", "at least 1"),
        ("RAYFINE_MAX_CONNECTIONS", "-5", "at least 1"),
        ("RAYFINE_SESSION_IDLE_TIMEOUT", "nan", "positive number"),
        ("RAYFINE_EAGER", "maybe", "must be 1 or 0"),
        ("RAYFINE_LOG_LEVEL", "loud", "must be one of critical"),
        ("RAYFINE_APP_COMMAND", "uvicorn app:app", "JSON list of strings"),
        ("RAYFINE_APP_COMMAND", "[]", "JSON list of strings"),
    ],
)
def test_bad_values_are_refused(name, value, fragment):
    with pytest.raises(ConfigError, match=fragment):
        ServerConfig.from_environ({"RAYFINE_TOKEN": "t", name: value})


def test_proxy_mode_on_tcp_needs_two_ports():
    environ = {"RAYFINE_TOKEN": "t", "RAYFINE_APP_COMMAND": '["app"]'}
    with pytest.raises(ConfigError, match="RAYFINE_APP_PORT"):
        ServerConfig.from_environ(dict(environ))
    assert ServerConfig.from_environ({**environ, "RAYFINE_UDS": "/run/s.sock"}).app_port == 8000


def test_connection_limit_stays_below_the_descriptor_limit():
    # In a child: a lowered hard limit cannot be raised again.
    code = (
        "import resource\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (100, 256))\n"
        "from rayfine_server.server import connection_limit\n"
        "print(connection_limit(1024), connection_limit(10),"
        " resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    clamped, small, soft = map(int, result.stdout.split())
    assert soft == 256  # raised to the hard limit
    assert clamped == 256 - 64
    assert small == 10
