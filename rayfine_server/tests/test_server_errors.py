"""Every failure answers the common error shape, and the server keeps serving."""

from __future__ import annotations

import pytest
from server_helpers import call, error_of

ENV = """
    class MyError(Exception):
        pass

    def add(a: int, b: int = 2, *, scale: float = 1.0) -> float:
        return (a + b) * scale

    def fails(message):
        return _inner(message)

    def _inner(message):
        raise ValueError(message)

    def fails_custom():
        raise MyError("custom failure")

    async def afails():
        raise KeyError("missing")

    def exits():
        raise SystemExit(3)

    class Custom(BaseException):
        pass

    def raises_keyboard_interrupt():
        raise KeyboardInterrupt

    async def araises_keyboard_interrupt():
        raise KeyboardInterrupt

    def raises_generator_exit():
        raise GeneratorExit

    async def araises_system_exit():
        raise SystemExit(2)

    def raises_custom_base():
        raise Custom("odd")

    async def araises_custom_base():
        raise Custom("odd")

    async def araises_cancelled():
        import asyncio
        raise asyncio.CancelledError()

    def ok():
        return "ok"
"""


def test_wrong_arguments_are_422_with_signature(shared_client):
    client = shared_client(ENV)
    for args, kwargs in [((), {}), ((1, 2, 3), {}), ((1,), {"nope": 1}), ((1,), {"a": 2})]:
        response = client.post(
            "/call", json={"method": "add", "args": list(args), "kwargs": kwargs}
        )
        assert response.status_code == 422, (args, kwargs)
        error = error_of(response)
        assert error["kind"] == "invalid_arguments"
        assert error["type"] == "TypeError"
        assert "add(a: int, b: int = 2, *, scale: float = 1.0) -> float" in error["message"]


def test_user_exception_is_500_with_type_message_and_traceback(shared_client):
    response = call(shared_client(ENV), "fails", "boom")
    assert response.status_code == 500
    error = error_of(response)
    assert error["kind"] == "remote_exception"
    assert error["type"] == "ValueError"
    assert error["message"] == "boom"
    trace = error["traceback"]
    assert trace.startswith("Traceback (most recent call last):")
    assert "in fails" in trace and "in _inner" in trace
    assert "raise ValueError(message)" in trace
    assert "rayfine_server" not in trace  # the server's own frames are trimmed
    assert trace.rstrip().endswith("ValueError: boom")


def test_custom_and_async_exceptions_carry_qualified_type(shared_client):
    client = shared_client(ENV)
    error = error_of(call(client, "fails_custom"))
    assert (error["type"], error["message"]) == ("env.MyError", "custom failure")
    error = error_of(call(client, "afails"))
    assert (error["type"], error["message"]) == ("KeyError", "'missing'")
    assert "in afails" in error["traceback"]


def test_system_exit_in_user_code_does_not_stop_the_server(shared_client):
    client = shared_client(ENV)
    error = error_of(call(client, "exits"))
    assert (error["kind"], error["type"]) == ("remote_exception", "SystemExit")
    assert call(client, "ok").json() == {"result": "ok"}


@pytest.mark.parametrize(
    "method, type_name",
    [
        ("raises_keyboard_interrupt", "KeyboardInterrupt"),
        ("araises_keyboard_interrupt", "KeyboardInterrupt"),
        ("raises_generator_exit", "GeneratorExit"),
        ("araises_system_exit", "SystemExit"),
        ("raises_custom_base", "env.Custom"),
        ("araises_custom_base", "env.Custom"),
        ("araises_cancelled", "CancelledError"),
    ],
)
def test_base_exceptions_from_user_code_are_remote_exceptions(shared_client, method, type_name):
    """They used to surface as a bare HTTP 500 (or, from async code, stop the loop)."""
    client = shared_client(ENV)
    response = call(client, method)
    assert response.status_code == 500
    error = error_of(response)
    assert (error["kind"], error["type"]) == ("remote_exception", type_name)
    if type_name != "CancelledError":
        assert f"in {method}" in error["traceback"]
    assert call(client, "ok").json() == {"result": "ok"}


@pytest.mark.parametrize(
    "body, fragment",
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\x00", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object, got array"),
        (b'{"args": []}', "'method' must be a non-empty string, got null"),
        (b'{"method": 5}', "'method' must be a non-empty string, got number"),
        (b'{"method": "ok", "args": {}}', "'args' must be a list, got object"),
        (b'{"method": "ok", "kwargs": []}', "'kwargs' must be an object, got array"),
        (b'{"method": "ok", "timeout": "1"}', "'timeout' must be a number"),
        (b'{"method": "ok", "timeout": true}', "'timeout' must be a number"),
        (b'{"method": "ok", "timeout": -1}', "positive"),
        (b'{"method": "ok", "kwarg": {}}', "Unknown field(s) kwarg"),
        (b"[" * 100000, "deeper than 512 levels"),
        (b'{"method": "ok", "args": ' + b"[" * 600 + b"]" * 600 + b"}", "deeper than 512 levels"),
        (b'{"method": "ok", "args": [' + b"9" * 5000 + b"]}", "not valid JSON"),
        (b'{"method": "ok", "session": 5}', "'session' must be a session id"),
    ],
)
def test_malformed_bodies_are_400(shared_client, body, fragment):
    client = shared_client(ENV)
    response = client.post("/call", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    error = error_of(response)
    assert error["kind"] == "bad_request"
    assert fragment in error["message"]
    assert call(client, "ok").json() == {"result": "ok"}


def test_oversized_body_is_413_too_large(serve):
    server = serve(ENV, max_body=1000)
    client = server.client()
    big = b'{"method": "ok", "args": ["' + b"x" * 2000 + b'"]}'
    response = client.post("/call", content=big)
    assert response.status_code == 413
    error = error_of(response)
    assert error["kind"] == "too_large" and "exceeds the limit of 1000 bytes" in error["message"]

    def chunks():  # no Content-Length: the limit is enforced while streaming
        for _ in range(5):
            yield b"x" * 500

    response = server.client().post("/call", content=chunks())
    assert response.status_code == 413
    assert "exceeds the limit" in error_of(response)["message"]
    assert call(server.client(), "ok").json() == {"result": "ok"}


def test_bodies_of_too_many_tiny_values_are_refused(serve):
    client = serve(ENV, max_body=1600).client()  # one value per 16 bytes: 100
    response = client.post("/call", json={"method": "ok", "args": [list(range(150))]})
    assert response.status_code == 400
    assert "more than 100" in error_of(response)["message"]
    response = client.post("/call", json={"method": "fails", "args": ["," * 1000]})
    assert error_of(response)["kind"] == "remote_exception"  # commas in strings do not count


def test_unknown_routes_and_verbs_use_the_error_shape(shared_client):
    client = shared_client(ENV)
    response = client.get("/nope")
    assert response.status_code == 404
    assert error_of(response)["kind"] == "bad_request"
    assert "POST /call" in error_of(response)["message"]
    response = client.get("/call")
    assert response.status_code == 405
    assert error_of(response)["kind"] == "bad_request"
    assert response.headers["allow"] == "POST"
    response = client.delete("/sessions")
    assert (response.status_code, response.headers["allow"]) == (405, "GET, POST")
    assert client.get("/docs").status_code == 404  # no generated docs to leak the surface


def test_internal_errors_are_reported_and_survived(make_client, monkeypatch):
    client = make_client(ENV)

    def broken(value, max_items):
        raise RuntimeError("parser bug")

    monkeypatch.setattr("rayfine_server.app.parse_call_request", broken)
    response = call(client, "ok")
    assert response.status_code == 500
    assert error_of(response)["kind"] == "internal_error"
    assert "parser bug" in error_of(response)["message"]
    monkeypatch.undo()
    assert call(client, "ok").json() == {"result": "ok"}
