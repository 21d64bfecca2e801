"""Many calls in flight: one Actor, interleaving async methods, threads, timeouts."""

from __future__ import annotations

import asyncio
import sys
import time

import httpx
from server_helpers import call, error_of

ENV = '''
    import asyncio
    import threading
    import time

    INITS = []
    RELEASE = threading.Event()
    BARRIER = threading.Barrier(3, timeout=10)
    ARRIVED = []
    ALL_ARRIVED = None

    class Actor:
        def __init__(self):
            INITS.append(threading.current_thread().name)
            time.sleep(0.3)  # wide window for racing first calls

        def sync_ping(self):
            return "sync"

        async def async_ping(self):
            return "async"

    async def rendezvous(n: int):
        """Returns only once n calls are inside it at the same time."""
        global ALL_ARRIVED
        if ALL_ARRIVED is None:
            ALL_ARRIVED = asyncio.Event()
        ARRIVED.append(1)
        if len(ARRIVED) == n:
            ALL_ARRIVED.set()
        await asyncio.wait_for(ALL_ARRIVED.wait(), 10)
        return len(ARRIVED)

    def meet_in_threads():
        """Returns only once 3 threads are inside it at the same time."""
        return BARRIER.wait()

    async def slow_async(seconds: float):
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            CANCELLED.append(True)
            raise
        return "done"

    CANCELLED = []

    def blocked_sync():
        RELEASE.wait(10)
        return "released"

    def quick():
        return "quick"

    SPINS = [0]
    SPIN_STOPPED = threading.Event()

    def spin():
        """Pure Python busy work that never returns by itself."""
        try:
            while True:
                SPINS[0] += 1
        finally:
            SPIN_STOPPED.set()
'''


async def gather_calls(client: httpx.AsyncClient, bodies: list) -> list:
    """POST every body at once and return the responses in order."""
    return await asyncio.gather(*(client.post("/call", json=body) for body in bodies))


def run(coroutine):
    return asyncio.run(coroutine)


def test_concurrent_first_calls_construct_the_actor_once(serve):
    server = serve(ENV)
    bodies = [{"method": "sync_ping" if i % 2 else "async_ping"} for i in range(12)]

    async def go():
        async with server.async_client() as client:
            return await gather_calls(client, bodies)

    responses = run(go())
    assert [r.status_code for r in responses] == [200] * 12
    assert {r.json()["result"] for r in responses} == {"sync", "async"}
    import env

    assert len(env.INITS) == 1
    assert env.INITS[0] != "MainThread"  # constructed off the event loop


def test_async_methods_interleave(serve):
    server = serve(ENV)

    async def go():
        async with server.async_client() as client:
            return await gather_calls(client, [{"method": "rendezvous", "args": [4]}] * 4)

    assert [r.json() for r in run(go())] == [{"result": 4}] * 4


def test_sync_methods_run_in_parallel_threads(serve):
    server = serve(ENV, max_threads=3)

    async def go():
        async with server.async_client() as client:
            return await gather_calls(client, [{"method": "meet_in_threads"}] * 3)

    assert sorted(r.json()["result"] for r in run(go())) == [0, 1, 2]


def test_async_timeout_cancels_the_method(make_client):
    client = make_client(ENV)
    started = time.monotonic()
    response = client.post("/call", json={"method": "slow_async", "args": [30], "timeout": 0.2})
    assert time.monotonic() - started < 5
    assert response.status_code == 504
    error = error_of(response)
    assert (error["kind"], error["type"]) == ("timeout", "TimeoutError")
    assert "was cancelled" in error["message"]
    assert sys.modules["env"].CANCELLED == [True]
    ok = client.post("/call", json={"method": "slow_async", "args": [0], "timeout": 5})
    assert ok.json() == {"result": "done"}


def test_sync_timeout_answers_promptly_and_says_it_runs_on(make_client):
    client = make_client(ENV)
    started = time.monotonic()
    response = client.post("/call", json={"method": "blocked_sync", "timeout": 0.2})
    elapsed = time.monotonic() - started
    env = sys.modules["env"]
    try:
        assert elapsed < 5
        assert response.status_code == 504
        message = error_of(response)["message"]
        assert "interrupted at its next Python instruction" in message
        quick = client.post("/call", json={"method": "quick"})  # still serving
        assert quick.json() == {"result": "quick"}
    finally:
        env.RELEASE.set()


def test_timeout_while_actor_constructs(make_client):
    client = make_client(ENV)
    response = client.post("/call", json={"method": "sync_ping", "timeout": 0.05})
    assert response.status_code == 504
    assert "Actor() was still being constructed" in error_of(response)["message"]
    ok = client.post("/call", json={"method": "sync_ping"})
    assert ok.json() == {"result": "sync"}
    import env

    assert len(env.INITS) == 1  # the abandoned construction was reused, not repeated


ACTOR_FAILS_ONCE = """
    ATTEMPTS = []

    class Actor:
        def __init__(self):
            ATTEMPTS.append(1)
            if len(ATTEMPTS) == 1:
                raise RuntimeError("first init fails")

        def hello(self):
            return "hi"

    def plain():
        return "plain works"
"""


def test_actor_init_failure_is_reported_then_retried(make_client):
    client = make_client(ACTOR_FAILS_ONCE)
    response = call(client, "hello")
    assert response.status_code == 500
    error = error_of(response)
    assert error["kind"] == "actor_init_failed"
    assert (error["type"], error["message"]) == ("RuntimeError", "first init fails")
    assert "in __init__" in error["traceback"]
    assert call(client, "plain").json() == {"result": "plain works"}  # functions need no Actor
    assert call(client, "hello").json() == {"result": "hi"}
    assert call(client, "hello").json() == {"result": "hi"}
    import env

    assert len(env.ATTEMPTS) == 2


def test_sync_timeout_interrupts_python_code(make_client):
    client = make_client(ENV)
    response = client.post("/call", json={"method": "spin", "timeout": 0.3})
    assert response.status_code == 504
    env = sys.modules["env"]
    assert env.SPIN_STOPPED.wait(5), "the timed-out sync method kept running"
    spins = env.SPINS[0]
    time.sleep(0.2)
    assert env.SPINS[0] == spins
    quick = client.post("/call", json={"method": "quick"})
    assert quick.json() == {"result": "quick"}
