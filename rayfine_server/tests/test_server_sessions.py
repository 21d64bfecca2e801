"""Sessions: many Actor instances (episodes) in one server, each with its own life."""

from __future__ import annotations

import asyncio
import sys
import threading
import time

from server_helpers import call, error_of

ENV = """
    import asyncio
    import threading
    import time

    CLOSED = []
    INITS = []

    class Actor:
        max_sessions = 3

        def __init__(self, seed: int = 0, *, name: str = "anon"):
            if seed < 0:
                raise ValueError("seed must be >= 0")
            INITS.append(seed)
            self.seed = seed
            self.name = name
            self.steps = 0

        def step(self) -> list:
            self.steps += 1
            return [self.name, self.seed, self.steps]

        def fail(self):
            raise RuntimeError(f"failure in {self.name}")

        def slow(self, seconds: float) -> str:
            time.sleep(seconds)
            return self.name

        async def wait(self, seconds: float) -> str:
            await asyncio.sleep(seconds)
            return self.name

        def close(self):
            CLOSED.append(self.name)

    def shared(x: int) -> int:
        return 2 * x
"""


def open_session(client, *args, **kwargs):
    body = {"args": list(args), "kwargs": kwargs}
    return client.post("/sessions", json=body)


def in_session(client, session, method, *args, timeout=None):
    body = {"method": method, "args": list(args), "session": session}
    if timeout is not None:
        body["timeout"] = timeout
    return client.post("/call", json=body)


def test_sessions_are_isolated_and_listed(make_client):
    client = make_client(ENV)
    a = open_session(client, 1, name="a")
    assert a.status_code == 201 and a.json()["max_sessions"] == 3
    b = open_session(client, 2, name="b").json()["session"]
    a = a.json()["session"]
    assert a != b and len(a) >= 20
    assert in_session(client, a, "step").json() == {"result": ["a", 1, 1]}
    assert in_session(client, a, "step").json() == {"result": ["a", 1, 2]}
    assert in_session(client, b, "step").json() == {"result": ["b", 2, 1]}
    assert call(client, "step").json() == {"result": ["anon", 0, 1]}  # the default instance
    assert in_session(client, b, "shared", 4).json() == {"result": 8}  # functions: any session
    error = error_of(in_session(client, a, "fail"))
    assert (error["kind"], error["message"]) == ("remote_exception", "failure in a")
    assert in_session(client, a, "step").json() == {"result": ["a", 1, 3]}
    listed = client.get("/sessions").json()
    assert listed["max_sessions"] == 3
    by_id = {s["id"]: s for s in listed["sessions"]}
    assert set(by_id) == {a, b}
    assert (by_id[a]["calls"], by_id[a]["in_flight"], by_id[a]["idle_timeout"]) == (4, 0, 600.0)
    assert by_id[a]["created"] <= by_id[a]["last_used"] <= time.time()
    assert client.get(f"/sessions/{b}").json()["calls"] == 2
    assert client.get("/health").json()["sessions"] == 2
    assert client.get("/methods").json()["max_sessions"] == 3


def test_capacity_then_close_then_reuse(make_client):
    client = make_client(ENV)
    ids = [open_session(client, i, name=str(i)).json()["session"] for i in range(3)]
    full = open_session(client)
    assert full.status_code == 429
    assert error_of(full)["kind"] == "session_capacity"
    assert "All 3 session(s) are in use" in error_of(full)["message"]
    assert client.delete(f"/sessions/{ids[0]}").json() == {"closed": ids[0]}
    assert sys.modules["env"].CLOSED == ["0"]
    assert open_session(client).status_code == 201
    gone = in_session(client, ids[0], "step")
    assert gone.status_code == 410 and error_of(gone)["kind"] == "session_closed"
    assert client.delete(f"/sessions/{ids[0]}").status_code == 410
    unknown = in_session(client, "no-such-session", "step")
    assert unknown.status_code == 404 and error_of(unknown)["kind"] == "unknown_session"
    assert client.delete("/sessions/nope").status_code == 404


def test_max_sessions_override_and_default(serve):
    assert serve(ENV, max_sessions=5).client().get("/methods").json()["max_sessions"] == 5
    plain = serve("class Actor:\n    def ping(self):\n        return 1\n").client()
    assert plain.get("/methods").json()["max_sessions"] == 1
    assert open_session(plain).status_code == 201
    assert open_session(plain).status_code == 429
    assert call(plain, "ping").json() == {"result": 1}  # the default instance does not count


def test_constructor_arguments_are_checked_and_failures_typed(make_client):
    client = make_client(ENV)
    wrong = open_session(client, 1, nme="x")
    assert wrong.status_code == 422
    assert "did you mean 'name'?" in error_of(wrong)["message"]
    failed = open_session(client, -1)
    assert failed.status_code == 500
    error = error_of(failed)
    assert (error["kind"], error["type"]) == ("actor_init_failed", "ValueError")
    assert "seed must be >= 0" in error["message"] and "in __init__" in error["traceback"]
    assert client.get("/health").status_code == 200  # the container keeps serving
    assert len(client.get("/sessions").json()["sessions"]) == 0  # no slot was used up


def test_timeouts_stay_in_their_session(make_client):
    client = make_client(ENV)
    a = open_session(client, name="a").json()["session"]
    b = open_session(client, name="b").json()["session"]
    timed_out = in_session(client, a, "wait", 5, timeout=0.2)
    assert timed_out.status_code == 504
    assert in_session(client, b, "wait", 0).json() == {"result": "b"}
    assert in_session(client, a, "wait", 0).json() == {"result": "a"}


def test_idle_sessions_expire_and_are_closed(serve):
    server = serve(ENV, session_idle_timeout=0.3, header_timeout=0.4)
    client = server.client()
    session = open_session(client, name="idle").json()["session"]
    busy = open_session(client, name="busy").json()["session"]
    caller = threading.Thread(target=lambda: in_session(server.client(), busy, "slow", 1.0))
    caller.start()
    time.sleep(0.8)
    gone = in_session(client, session, "step")
    assert gone.status_code == 410
    assert "expired after 0.3 s idle" in error_of(gone)["message"]
    assert sys.modules["env"].CLOSED == ["idle"]
    caller.join(5)
    assert in_session(client, busy, "step").status_code == 200  # in flight: not idle


def test_per_session_idle_timeout(make_client):
    client = make_client(ENV)
    session = client.post("/sessions", json={"idle_timeout": 42}).json()["session"]
    assert client.get(f"/sessions/{session}").json()["idle_timeout"] == 42


def test_closing_a_session_cancels_its_calls(make_client):
    client = make_client(ENV)
    session = open_session(client, name="x").json()["session"]
    result = []
    caller = threading.Thread(target=lambda: result.append(in_session(client, session, "wait", 30)))
    caller.start()
    time.sleep(0.2)
    assert client.get(f"/sessions/{session}").json()["in_flight"] == 1
    assert client.delete(f"/sessions/{session}").status_code == 200
    caller.join(5)
    assert result[0].status_code == 410
    assert "was closed while wait() ran" in error_of(result[0])["message"]


def test_shutdown_closes_every_session_and_the_default_instance(serve):
    server = serve(ENV)
    client = server.client()
    open_session(client, name="s1")
    open_session(client, name="s2")
    call(client, "step")
    server.stop()
    assert sorted(sys.modules["env"].CLOSED) == ["anon", "s1", "s2"]


def test_async_close_is_awaited_and_close_errors_are_only_logged(make_client, caplog):
    source = """
        CLOSED = []

        class Actor:
            max_sessions = 2

            def __init__(self, fail=False):
                self.fail = fail

            def ping(self):
                return "pong"

            async def close(self):
                CLOSED.append(self.fail)
                if self.fail:
                    raise RuntimeError("close failed")
    """
    client = make_client(source)
    good = open_session(client).json()["session"]
    bad = open_session(client, True).json()["session"]
    assert client.delete(f"/sessions/{good}").status_code == 200
    with caplog.at_level("WARNING"):
        assert client.delete(f"/sessions/{bad}").status_code == 200
    assert sys.modules["env"].CLOSED == [False, True]
    assert any("close failed" in record.getMessage() for record in caplog.records)


def test_many_sessions_at_once(serve):
    server = serve(ENV, max_sessions=300)
    client = server.client()
    ids = [open_session(client, name=str(i)).json()["session"] for i in range(250)]

    async def burst():  # the last 50 opened and used concurrently
        async with server.async_client() as concurrent:
            opened = await asyncio.gather(
                *(
                    concurrent.post("/sessions", json={"kwargs": {"name": str(i)}})
                    for i in range(250, 300)
                )
            )
            return [r.json()["session"] for r in opened]

    ids += asyncio.run(burst())
    names = [in_session(client, s, "step").json()["result"][0] for s in ids]
    assert sorted(names, key=int) == [str(i) for i in range(300)]
    assert len(client.get("/sessions").json()["sessions"]) == 300


def test_env_without_an_actor_has_no_sessions(make_client):
    client = make_client("def f():\n    return 1\n")
    response = open_session(client)
    assert response.status_code == 400 and "no Actor class" in error_of(response)["message"]
    assert client.get("/methods").json()["max_sessions"] == 0
