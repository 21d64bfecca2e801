"""Worker threads as a hard limit, stuck threads, and calls cancelled when the client leaves."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time

import pytest
from server_helpers import call, error_of, request_bytes

ENV = """
    import asyncio
    import threading
    import time

    CANCELLED = threading.Event()
    STOPPED = threading.Event()
    RELEASE = threading.Event()

    def stuck(seconds: float) -> float:
        time.sleep(seconds)  # one C call: an interrupt cannot stop it
        return seconds

    def quick() -> str:
        return "quick"

    def spin():
        try:
            while True:
                pass
        finally:
            STOPPED.set()

    async def wait_forever():
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            CANCELLED.set()
            raise

    def blocked():
        RELEASE.wait(10)
        return "released"
"""


def worker_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("rayfine-worker"))


def send_and_leave(path: str, body: dict) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(path)
        sock.sendall(request_bytes("POST", "/call", json.dumps(body).encode()))
        time.sleep(0.2)  # the call is running now; the client goes away


def test_thread_limit_is_hard_and_stuck_threads_are_reported(serve):
    """Finding: timed-out calls stuck in C leaked threads (limit 8 reached 63), and /health
    stayed ok while no call could run."""
    server = serve(ENV, max_threads=3)
    client = server.client()
    before = worker_threads()
    results = []

    def one() -> None:
        results.append(call(server.client(), "stuck", 1.5, timeout=0.2))

    callers = [threading.Thread(target=one) for _ in range(9)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(10)
    assert [r.status_code for r in results] == [504] * 9
    assert any("did not start within" in error_of(r)["message"] for r in results)
    assert worker_threads() - before <= 3
    health = client.get("/health")
    assert health.status_code == 503
    error = error_of(health)
    assert error["kind"] == "overloaded" and "restart the container" in error["message"]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the sleeps end; their threads come back
        health = client.get("/health")
        if health.status_code == 200 and health.json()["threads"]["busy"] == 0:
            break
        time.sleep(0.1)
    assert client.get("/health").json()["threads"] == {"busy": 0, "stuck": 0, "max": 3}
    assert call(client, "quick").json() == {"result": "quick"}
    assert worker_threads() - before <= 3


def test_a_thread_that_cannot_start_is_not_a_silent_failure(serve, monkeypatch):
    """Finding: with pids_limit=100 every sync call failed "can't start new thread" while
    /health stayed ok.  Calls now wait for the threads that exist; with none, /health says so."""
    server = serve(ENV, max_threads=4)
    client = server.client()
    real_start = threading.Thread.start

    def failing_start(self: threading.Thread) -> None:
        if self.name.startswith("rayfine-worker"):
            raise RuntimeError("can't start new thread")
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", failing_start)
    response = call(client, "quick")
    assert response.status_code == 503
    assert error_of(response)["kind"] == "overloaded"
    assert "can't start new thread" in error_of(response)["message"]
    assert client.get("/health").status_code == 503
    monkeypatch.undo()
    assert call(client, "quick").json() == {"result": "quick"}  # one thread now
    monkeypatch.setattr(threading.Thread, "start", failing_start)
    env = sys.modules["env"]
    blocked = threading.Thread(target=lambda: call(server.client(), "blocked"))
    blocked.start()
    time.sleep(0.2)
    waiting = []
    queued = threading.Thread(target=lambda: waiting.append(call(server.client(), "quick")))
    queued.start()  # no second thread can start: it waits for the first
    time.sleep(0.2)
    assert not waiting
    env.RELEASE.set()
    queued.join(5)
    blocked.join(5)
    assert waiting[0].json() == {"result": "quick"}


def test_client_disconnect_cancels_an_async_call(serve):
    server = serve(ENV)
    send_and_leave(server.sock, {"method": "wait_forever"})
    assert sys.modules["env"].CANCELLED.wait(5)


def test_client_disconnect_interrupts_a_sync_call(serve):
    """Finding: cancelled client calls kept running in the container."""
    server = serve(ENV, max_threads=1)
    send_and_leave(server.sock, {"method": "spin"})
    assert sys.modules["env"].STOPPED.wait(5)
    client = server.client()
    assert call(client, "quick").json() == {"result": "quick"}  # the one thread is free again
    assert client.get("/health").json()["threads"]["busy"] == 0


def test_stopping_the_server_answers_calls_still_running(serve):
    server = serve(ENV)
    result = []
    caller = threading.Thread(target=lambda: result.append(call(server.client(), "wait_forever")))
    caller.start()
    time.sleep(0.3)
    server.stop()  # grace 0.5 s in tests
    caller.join(10)
    assert result[0].status_code == 503
    assert "shutting down" in error_of(result[0])["message"]


@pytest.mark.parametrize("method", ["spin", "wait_forever"])
def test_timeouts_free_the_thread_or_task(serve, method):
    server = serve(ENV, max_threads=1)
    client = server.client()
    assert call(client, method, timeout=0.2).status_code == 504
    assert call(client, "quick").json() == {"result": "quick"}
