"""The asyncio face, offline on the ``process`` runtime: calls in flight, bounded starts, cleanup.

Every test runs its coroutine with ``asyncio.run``, so each has its own
event loop; the module's shared environment is therefore also used from
many loops, as the API allows.  (The conformance suite runs the asyncio
face on every real runtime too.)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import subprocess
import sys
import threading
import time
import types
import uuid

import pytest

import rayfine_core as rf
from rayfine_core import errors, labels
from rayfine_core.plugins import register, unregister


def containers(runtime: str, **match: str) -> list:
    return rf.get_runtime(runtime).list_containers({labels.OWNER: labels.OWNER_VALUE, **match})


@pytest.fixture(scope="module")
def rayfine_runtime():
    return "process"


@pytest.fixture(scope="module")
def image(process_image):
    return process_image("kitchen-sink")


@pytest.fixture(scope="module")
def aenv(rayfine_runtime, image):
    env = asyncio.run(rf.aload_env(image, runtime=rayfine_runtime))
    yield env
    asyncio.run(env.cleanup())


@pytest.fixture
def hooks():
    """Register a plugin object for one test: ``hooks(obj)``; unregistered afterwards."""
    names: list[str] = []
    yield lambda plugin: names.append(register(plugin, name=f"test-{uuid.uuid4().hex[:8]}"))
    for name in names:
        unregister(name)


def test_calls_sync_and_async_methods(aenv):
    async def main():
        assert await aenv.add(1) == 3
        assert await aenv.add(1, b=5) == 6
        assert await aenv.echo(1, "x", flag=True) == {"args": [1, "x"], "kwargs": {"flag": True}}
        assert await aenv.square(3) == 9
        assert await aenv.call_method("add", [2], {"b": 2}) == 4
        assert await aenv.is_ready()
        assert {"add", "echo", "square"} <= {m.name for m in await aenv.list_methods()}

    asyncio.run(main())
    assert isinstance(aenv, rf.AsyncEnvironment) and not aenv.closed


def test_errors_are_typed(aenv):
    async def main():
        with pytest.raises(errors.RemoteException, match="custom"):
            await aenv.fail("custom")
        with pytest.raises(errors.MethodNotFoundError):
            await aenv.nope()
        with pytest.raises(errors.InvalidArgumentsError):
            await aenv.add(1, 2, 3)
        with pytest.raises(errors.CallTimeout):
            await aenv.sleep(5, timeout=0.3)
        assert await aenv.add(1) == 3

    asyncio.run(main())


def test_many_calls_in_flight(aenv):
    async def main():
        started = time.monotonic()
        results = await asyncio.gather(*(aenv.sleep(0.5) for _ in range(64)))
        return results, time.monotonic() - started

    results, elapsed = asyncio.run(main())
    assert results == [0.5] * 64
    assert elapsed < 10  # sanity only: run one after another they would take 32 s


def test_async_with_removes_the_container(rayfine_runtime, image):
    async def main():
        async with rf.aload_env(image, runtime=rayfine_runtime) as env:
            assert containers(rayfine_runtime, **{labels.ENV_ID: env.id})
            assert await rf.aget_environment(env.id) is env
            assert await env.add(1) == 3
        return env

    env = asyncio.run(main())
    assert env.closed and env.id not in rf.list_active_environments()
    assert containers(rayfine_runtime, **{labels.ENV_ID: env.id}) == []
    with pytest.raises(errors.EnvironmentClosedError):
        asyncio.run(env.add(1))
    asyncio.run(env.cleanup())  # idempotent


def test_concurrent_starts_are_bounded(rayfine_runtime, image, hooks, monkeypatch):
    monkeypatch.setenv("RAYFINE_MAX_CONCURRENT_STARTS", "2")
    lock, starting, most = threading.Lock(), [0], [0]

    @rf.hookimpl
    def rayfine_start(request, runtime):
        with lock:
            starting[0] += 1
            most[0] = max(most[0], starting[0])

    @rf.hookimpl
    def rayfine_health(handle, ready, elapsed, error):
        with lock:
            starting[0] -= 1

    hooks(types.SimpleNamespace(rayfine_start=rayfine_start, rayfine_health=rayfine_health))

    async def main():
        envs = await rf.aload_envs(image, 5, runtime=rayfine_runtime)
        try:
            return await asyncio.gather(*(env.add(i) for i, env in enumerate(envs)))
        finally:
            await asyncio.gather(*(env.cleanup() for env in envs))

    assert asyncio.run(main()) == [i + 2 for i in range(5)]
    assert most[0] == 2  # concurrent, and never more than the bound


def test_one_failed_start_stops_the_others(rayfine_runtime, image, hooks):
    run_label = {"rayfine.test-run": uuid.uuid4().hex}
    up: list[str] = []
    starts = [0]

    @rf.hookimpl
    def rayfine_start(request, runtime):
        starts[0] += 1
        if starts[0] == 4:
            time.sleep(0.5)  # the others get going first
            raise RuntimeError("the fourth start is refused")

    @rf.hookimpl
    def rayfine_health(handle, ready, elapsed, error):
        up.append(handle.id)

    hooks(types.SimpleNamespace(rayfine_start=rayfine_start, rayfine_health=rayfine_health))
    with pytest.raises(errors.PluginError, match="fourth start"):
        asyncio.run(rf.aload_envs(image, 6, runtime=rayfine_runtime, labels=run_label))
    assert containers(rayfine_runtime, **run_label) == []
    assert all(rf.get_runtime(rayfine_runtime).health(cid).running is False for cid in up)


def test_cancelled_start_leaves_nothing(rayfine_runtime, image):
    run_label = {"rayfine.test-run": uuid.uuid4().hex}

    async def main():
        task = asyncio.ensure_future(rf.aload_env(image, runtime=rayfine_runtime, labels=run_label))
        for _ in range(200):  # cancel once the container exists, before it is ready
            await asyncio.sleep(0.01)
            if containers(rayfine_runtime, **run_label):
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert containers(rayfine_runtime, **run_label) == []


def test_sync_api_inside_a_running_loop(rayfine_runtime, image):
    async def main():
        with rf.load_env(image, runtime=rayfine_runtime) as env:  # blocks the loop, and works
            return env.add(1), await asyncio.sleep(0, "loop still runs")

    assert asyncio.run(main()) == (3, "loop still runs")


def test_sync_api_from_threads(rayfine_runtime, image):
    with rf.load_env(image, runtime=rayfine_runtime) as env:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            assert list(pool.map(lambda i: env.add(i, b=1), range(64))) == [
                i + 1 for i in range(64)
            ]
            # a thread with its own event loop, using the blocking API inside it
            assert pool.submit(asyncio.run, _call_in_loop(env)).result() == 3


async def _call_in_loop(env: rf.Environment) -> int:
    return env.add(1)


def test_cleanup_all_and_interpreter_exit(rayfine_runtime, image):
    """In a child process, as both stop every environment of the process."""
    run_label = uuid.uuid4().hex
    script = f"""
import asyncio, rayfine_core as rf
kw = dict(runtime={rayfine_runtime!r}, labels={{"rayfine.test-run": {run_label!r}}})

async def main():
    envs = await rf.aload_envs({image!r}, 2, **kw)
    rf.load_env({image!r}, **kw)
    assert await rf.acleanup_all_environments() == 3 and all(env.closed for env in envs)
    return await rf.aload_env({image!r}, **kw)

env = asyncio.run(main())
assert asyncio.run(env.add(1)) == 3  # and exit without cleanup()
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert containers(rayfine_runtime, **{"rayfine.test-run": run_label}) == []


def test_bad_bound_is_a_validation_error(monkeypatch, image):
    monkeypatch.setenv("RAYFINE_MAX_CONCURRENT_STARTS", "0")
    with pytest.raises(errors.ValidationError, match="RAYFINE_MAX_CONCURRENT_STARTS"):
        asyncio.run(rf.aload_env(image))


def test_a_slow_engine_does_not_block_the_event_loop(rayfine_runtime, image, hooks):
    """Engine calls run in threads: a start that takes a second leaves the loop free."""

    @rf.hookimpl
    def rayfine_start(request, runtime):
        time.sleep(1.0)  # an engine having a slow moment (hooks run where engine calls do)

    hooks(types.SimpleNamespace(rayfine_start=rayfine_start))

    async def main():
        gaps, stop = [], asyncio.Event()

        async def ticker():
            last = time.monotonic()
            while not stop.is_set():
                await asyncio.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        ticking = asyncio.ensure_future(ticker())
        try:
            async with rf.aload_env(image, runtime=rayfine_runtime) as env:
                assert await env.add(1) == 3
        finally:
            stop.set()
            await ticking
        return max(gaps)

    assert asyncio.run(main()) < 0.5
