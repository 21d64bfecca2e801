"""The bearer token: required on every route, invisible to env.py."""

from __future__ import annotations

import os

import pytest
from starlette.testclient import TestClient
from rayfine_server.app import create_app
from rayfine_server.config import ServerConfig
from server_helpers import call, error_of

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
def client(write_env, monkeypatch) -> TestClient:
    """A server configured from the process environment, as ``__main__`` does."""
    monkeypatch.setenv("RAYFINE_TOKEN", SECRET)
    monkeypatch.setenv("RAYFINE_ENV_DIR", str(write_env(ENV)))
    monkeypatch.setenv("OTHER_SETTING", "visible")
    config = ServerConfig.from_environ()
    with TestClient(create_app(config)) as test_client:
        yield test_client


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
    [f"Bearer {SECRET}x", "Bearer ", f"Basic {SECRET}", SECRET, f"Bearer{SECRET}"],
)
def test_wrong_tokens_are_refused(client, header):
    assert client.get("/health", headers={"Authorization": header}).status_code == 401
    assert call(client, "seen").status_code == 401


def test_right_token_is_accepted(client):
    assert client.get("/health", headers=auth(SECRET)).status_code == 200
    assert client.get("/health", headers={"authorization": f"bearer {SECRET}"}).status_code == 200
    client.headers.update(auth(SECRET))
    assert call(client, "seen").status_code == 200


def test_env_code_never_sees_the_token(client):
    client.headers.update(auth(SECRET))
    assert call(client, "seen").json() == {"result": [None, None, None, "visible"]}
    assert "RAYFINE_TOKEN" not in os.environ


def test_no_token_configured_means_open(make_client):
    assert make_client(ENV).get("/health").status_code == 200


def test_refused_call_does_not_run_user_code(make_client):
    client = make_client("CALLS = []\n\ndef touch():\n    CALLS.append(1)\n", token=SECRET)
    assert call(client, "touch").status_code == 401
    import env

    assert env.CALLS == []
