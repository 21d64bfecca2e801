"""RAYFINE_EAGER=1: the default Actor is built at start-up and /health reports how that went."""

from __future__ import annotations

import sys
import time

from server_helpers import call, error_of

SLOW = """
    import threading
    import time

    READY = threading.Event()
    BUILT = []

    class Actor:
        def __init__(self):
            READY.wait(10)
            BUILT.append(time.monotonic())

        def ping(self):
            return "pong"
"""

BROKEN = """
    class Actor:
        def __init__(self):
            raise RuntimeError("no model file")

        def ping(self):
            return "pong"

    def plain():
        return "plain"
"""


def test_health_waits_for_the_eager_actor(serve):
    server = serve(SLOW, eager=True)
    client = server.client()
    env = sys.modules["env"]
    starting = client.get("/health")
    assert starting.status_code == 503
    assert error_of(starting)["kind"] == "app_starting"
    assert "RAYFINE_EAGER" in error_of(starting)["message"]
    assert not env.BUILT
    env.READY.set()
    deadline = time.monotonic() + 5
    while client.get("/health").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert len(env.BUILT) == 1
    assert call(client, "ping").json() == {"result": "pong"}
    assert len(env.BUILT) == 1  # the call used the instance built at start-up


def test_broken_actor_is_reported_by_health(serve):
    """Finding: a broken Actor loaded "fine", and failed only on the first call."""
    server = serve(BROKEN, eager=True)
    client = server.client()
    deadline = time.monotonic() + 5
    while (health := client.get("/health")).json()["error"]["kind"] == "app_starting":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert health.status_code == 503
    error = error_of(health)
    assert (error["kind"], error["type"], error["message"]) == (
        "actor_init_failed",
        "RuntimeError",
        "no model file",
    )
    assert "in __init__" in error["traceback"]
    assert call(client, "plain").json() == {"result": "plain"}  # functions still work


def test_without_eager_the_actor_is_built_on_first_use(serve):
    server = serve(BROKEN)
    client = server.client()
    assert client.get("/health").status_code == 200
    assert error_of(call(client, "ping"))["kind"] == "actor_init_failed"
