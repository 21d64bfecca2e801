"""The bearer token: required on every route, invisible to env.py."""

from __future__ import annotations

import os

import pytest
from server_helpers import RunningServer, call, error_of, raw

from rayfine_server.config import ServerConfig

ENV = """
    import os

    TOKEN_AT_IMPORT = os.environ.get("RAYFINE_TOKEN")

    class Actor:
        def __init__(self):
            self.token_at_init = os.environ.get("RAYFINE_TOKEN")

        def seen(self):
            return [TOKEN_AT_IMPORT, self.token_at_init, os.environ.get("RAYFINE_TOKEN"),
                    os.environ.get("OTHER_SETTING")]
"""

SECRET = "s3cret-token"


@pytest.fixture
def server(write_env, monkeypatch, short_dir):
    """A server configured from the process environment, as ``__main__`` does."""
    monkeypatch.setenv("RAYFINE_TOKEN", SECRET)
    monkeypatch.setenv("RAYFINE_ENV_DIR", str(write_env(ENV)))
    monkeypatch.setenv("RAYFINE_UDS", str(short_dir / "s.sock"))
    monkeypatch.setenv("OTHER_SETTING", "visible")
    running = RunningServer(ServerConfig.from_environ())
    yield running
    running.stop()


@pytest.fixture
def client(server):
    """A client sending no token."""
    return server.client(token=None)


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("path", ["/health", "/methods", "/nope"])
def test_every_route_needs_the_token(client, path):
    response = client.get(path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert error_of(response)["kind"] == "unauthorized"


@pytest.mark.parametrize(
    "header",
    [
        f"Bearer {SECRET}x",
        "Bearer",
        f"Basic {SECRET}",
        SECRET,
        f"Bearer{SECRET}",
        f"Bearer  x{SECRET}",
    ],
)
def test_wrong_tokens_are_refused(client, header):
    assert client.get("/health", headers={"Authorization": header}).status_code == 401
    assert call(client, "seen").status_code == 401


def test_right_token_is_accepted(client):
    assert client.get("/health", headers=auth(SECRET)).status_code == 200
    assert client.get("/health", headers={"authorization": f"bearer {SECRET}"}).status_code == 200
    client.headers.update(auth(SECRET))
    assert call(client, "seen").status_code == 200


def test_token_in_x_rayfine_token_is_accepted(client):
    """For proxies that keep Authorization for themselves (the Kubernetes pod proxy)."""
    headers = {"X-Rayfine-Token": SECRET, "Authorization": "Bearer for-the-proxy"}
    assert client.get("/health", headers=headers).status_code == 200
    assert client.get("/health", headers={"X-Rayfine-Token": "nope"}).status_code == 401


def test_refusal_closes_the_connection_without_reading_the_body(server):
    body = b"x" * 100
    request = (
        b"POST /call HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n"
        + body
        + b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n"
    )
    answer = raw(server.sock, request)
    assert answer.startswith(b"HTTP/1.1 401 ")
    assert answer.count(b"HTTP/1.1") == 1 and b"connection: close" in answer


def test_refusals_are_logged_at_most_once_per_interval(server, caplog):
    with caplog.at_level("WARNING", logger="rayfine_server.refused"):
        for _ in range(200):
            raw(server.sock, b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
            raw(server.sock, b"garbage\r\n\r\n")
    lines = [r for r in caplog.records if r.name == "rayfine_server.refused"]
    assert len(lines) <= 1
    assert all(SECRET not in r.getMessage() for r in caplog.records)


def test_env_code_never_sees_the_token(client):
    client.headers.update(auth(SECRET))
    assert call(client, "seen").json() == {"result": [None, None, None, "visible"]}
    assert "RAYFINE_TOKEN" not in os.environ


def test_insecure_flag_serves_without_a_token(serve):
    server = serve(ENV, token=None, insecure=True)
    assert server.client(token=None).get("/health").status_code == 200


def test_refused_call_does_not_run_user_code(serve):
    server = serve("CALLS = []\n\ndef touch():\n    CALLS.append(1)\n")
    assert call(server.client(token="wrong"), "touch").status_code == 401
    import env

    assert env.CALLS == []
