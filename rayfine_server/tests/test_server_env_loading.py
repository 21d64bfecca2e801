"""Importing env.py: sibling imports, and failures served as 503 instead of a crash."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from server_helpers import call, error_of


def test_env_can_import_sibling_modules(make_client):
    client = make_client(
        "from helpers import double\n\ndef run(x):\n    return double(x)\n",
        siblings={"helpers": "def double(x):\n    return 2 * x\n"},
    )
    assert call(client, "run", 21).json() == {"result": 42}
    # Imported from a sibling, so not part of the environment's surface.
    assert call(client, "double", 1).status_code == 404


def test_env_module_is_registered_as_env(make_client):
    client = make_client(
        "import sys\n\ndef module_name():\n    return __name__ + ':' + str('env' in sys.modules)\n"
    )
    assert call(client, "module_name").json() == {"result": "env:True"}


@pytest.mark.parametrize(
    "source, error_type, fragment",
    [
        ("def broken(:\n    pass\n", "SyntaxError", "line 1"),
        ("import math\nvalue = 1 / 0\n", "ZeroDivisionError", "division by zero"),
        ("import no_such_module_xyz\n", "ModuleNotFoundError", "no_such_module_xyz"),
        ("import sys\nsys.exit(4)\n", "SystemExit", "4"),
        ("Actor = 5\n", "TypeError", "must be a class"),
        ("class Actor:\n    max_sessions = 0\n", "ValueError", "max_sessions must be a positive"),
        ("raise KeyboardInterrupt\n", "KeyboardInterrupt", ""),
    ],
)
def test_load_failure_is_served_as_503(make_client, source, error_type, fragment):
    client = make_client(source)
    requests = (
        client.get("/health"),
        client.get("/methods"),
        call(client, "anything"),
        client.post("/sessions", json={}),
    )
    for response in requests:
        assert response.status_code == 503
        error = error_of(response)
        assert error["kind"] == "env_load_failed"
        assert error["type"] == error_type
        assert fragment in error["message"]
        assert "env.py" in error["message"]


def test_failed_import_leaves_no_half_initialised_module(make_client):
    make_client("import sys\nvalue = 1 / 0\n")
    assert "env" not in sys.modules


def test_import_failure_traceback_starts_in_user_code(make_client):
    error = error_of(
        make_client("def f():\n    raise RuntimeError('at import')\n\nf()\n").get("/health")
    )
    trace = error["traceback"]
    assert "env.py" in trace and "in f" in trace
    assert "importlib" not in trace and "rayfine_server" not in trace
    assert trace.rstrip().endswith("RuntimeError: at import")


def test_syntax_error_traceback_shows_the_line(make_client):
    trace = error_of(make_client("x = 1\ndef broken(:\n    pass\n").get("/health"))["traceback"]
    assert "def broken(:" in trace and "SyntaxError" in trace


def test_missing_env_py_is_served_as_503(serve, tmp_path: Path):
    response = serve(env_dir=tmp_path / "empty").client().get("/health")
    assert response.status_code == 503
    error = error_of(response)
    assert (error["kind"], error["type"]) == ("env_load_failed", "FileNotFoundError")
    assert "No env.py in" in error["message"]


def test_env_dir_goes_first_on_sys_path(serve, write_env):
    env_dir = write_env("def f():\n    return 1\n")
    serve(env_dir=env_dir)
    assert sys.path[0] == str(env_dir.resolve())
