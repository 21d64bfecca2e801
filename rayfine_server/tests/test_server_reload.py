"""RAYFINE_RELOAD=1: edits to the env directory are picked up without a restart."""

from __future__ import annotations

import textwrap
import time

from server_helpers import call, error_of

V1 = """
    from helper import GREETING

    CLOSED = []

    class Actor:
        max_sessions = 2

        def __init__(self):
            self.count = 0

        def hello(self):
            self.count += 1
            return [GREETING, 1, self.count]

        def close(self):
            CLOSED.append(self.count)
"""
V2 = """
    from helper import GREETING

    class Actor:
        def hello(self):
            return [GREETING, 2]

        def added(self):
            return "new method"
"""


def wait_for(predicate, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def test_edits_are_reloaded_sessions_closed_and_broken_edits_reported(serve, write_env):
    env_dir = write_env(V1, helper="GREETING = 'hi'\n")
    server = serve(env_dir=env_dir, reload=True)
    client = server.client()
    assert call(client, "hello").json() == {"result": ["hi", 1, 1]}
    session = client.post("/sessions", json={}).json()["session"]
    import env as first

    (env_dir / "env.py").write_text(textwrap.dedent(V2))
    assert wait_for(lambda: call(client, "hello").json().get("result") == ["hi", 2])
    assert call(client, "added").json() == {"result": "new method"}
    assert len(first.CLOSED) == 2 and 0 in first.CLOSED  # the session and the default instance
    gone = client.post("/call", json={"method": "hello", "session": session})
    assert gone.status_code == 410
    assert "env.py was reloaded" in error_of(gone)["message"]

    (env_dir / "helper.py").write_text("GREETING = 'hello'\n")  # a sibling module counts too
    assert wait_for(lambda: call(client, "hello").json().get("result") == ["hello", 2])

    (env_dir / "env.py").write_text("def broken(:\n")
    assert wait_for(lambda: client.get("/health").status_code == 503)
    error = error_of(client.get("/health"))
    assert (error["kind"], error["type"]) == ("env_load_failed", "SyntaxError")
    assert error_of(call(client, "hello"))["kind"] == "env_load_failed"

    (env_dir / "env.py").write_text("def fixed():\n    return 'fixed'\n")
    assert wait_for(lambda: client.get("/health").status_code == 200)
    assert call(client, "fixed").json() == {"result": "fixed"}


def test_without_reload_edits_are_ignored(serve, write_env):
    env_dir = write_env("def version():\n    return 1\n")
    client = serve(env_dir=env_dir).client()
    (env_dir / "env.py").write_text("def version():\n    return 2\n")
    time.sleep(0.8)
    assert call(client, "version").json() == {"result": 1}
