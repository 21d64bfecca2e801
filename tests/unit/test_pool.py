"""Warm pools, offline on the ``process`` runtime: fill, hand out, replace, reuse, fail, close."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import types
from typing import ClassVar

import pytest

import rayfine_core as rf
from rayfine_core import errors
from rayfine_core.plugins import register, unregister
from rayfine_core.pool import POOL_LABEL
from rayfine_core.testing.process_runtime import ProcessRuntime


@pytest.fixture(autouse=True)
def _private_run_root(tmp_path_factory, monkeypatch):
    """Host-wide slots and pool status files of these tests stay away from other processes'."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path_factory.mktemp("run")))


def process() -> ProcessRuntime:
    runtime = rf.get_runtime("process")
    assert isinstance(runtime, ProcessRuntime)
    return runtime


def containers_of(pool_name: str) -> list:
    return process().list_containers({POOL_LABEL: pool_name})


def wait_until(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def kill(env: rf.Environment) -> None:
    pid = process().pid(env.handle.id)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)


# -- the happy path ---------------------------------------------------------------------------


def test_fresh_environment_per_episode(kitchen):
    with rf.load_pool(kitchen, 2, runtime="process", name="unit-fresh") as pool:
        status = pool.status()
        assert (status.ready, status.starting, status.in_use, status.kind) == (2, 0, 0, "warm")
        assert len(containers_of("unit-fresh")) == 2
        seen = []
        for episode in range(4):
            with pool.env() as env:
                assert isinstance(env, rf.Environment)
                assert env.add(episode) == episode + 2
                assert pool.status().in_use == 1
                seen.append((env.id, env.handle.id))
            assert env.closed or wait_until(lambda env=env: env.closed)
        assert len({env_id for env_id, _ in seen}) == 4  # never the same environment twice
        pool.wait_ready(timeout=30)
        assert wait_until(lambda: all(process().health(c).status == "removed" for _, c in seen))
        assert pool.status().started >= 6
    assert containers_of("unit-fresh") == []
    assert rf.list_active_environments() == []
    assert pool.closed


def test_acquire_and_release_by_hand_and_misuse(kitchen):
    with rf.load_pool(kitchen, 1, runtime="process") as pool:
        env = pool.acquire(timeout=30)
        assert env.square(3) == 9
        pool.release(env)
        with pytest.raises(errors.ValidationError, match="released already"):
            pool.release(env)
        with rf.load_env(kitchen, runtime="process") as stranger:
            with pytest.raises(errors.ValidationError, match="not an environment of pool"):
                pool.release(stranger)
    with pytest.raises(errors.EnvironmentClosedError, match="closed"):
        pool.acquire()
    pool.close()  # idempotent


def test_bad_input_fails_before_any_start(kitchen):
    before = process().list_containers({})
    cases = [
        dict(size=0),
        dict(size=-1),
        dict(size=True),
        dict(size="3"),
        dict(size=2, name="bad name"),
        dict(size=2, max_uses=2),
        dict(size=2, reset="not a method"),
        dict(size=2, reset="_private"),
        dict(size=2, max_envs=1),
        dict(size=2, health_interval=-1),
        dict(size=2, max_starting=0),
        dict(size=2, container_name="one-name"),
        dict(size=2, replicas=3),
        dict(size=2, mem_limit="lots"),
    ]
    for case in cases:
        with pytest.raises(errors.ValidationError):
            rf.load_pool(kitchen, runtime="process", **case)
    with pytest.raises(errors.ValidationError, match="timeout"):
        with rf.load_pool(kitchen, 1, runtime="process") as pool:
            pool.acquire(timeout=-1)
    assert process().list_containers({}) == before
    assert rf.list_active_environments() == []


def test_exhausted_pool_raises_capacity_error_after_its_timeout(kitchen):
    with rf.load_pool(kitchen, 1, runtime="process", max_envs=1) as pool:
        held = pool.acquire()
        started = time.monotonic()
        with pytest.raises(errors.CapacityError, match="size=, max_envs="):
            pool.acquire(timeout=0.5)
        assert 0.4 < time.monotonic() - started < 5
        pool.release(held)
        assert pool.acquire(timeout=30).add(1) == 3  # the replacement


# -- reuse ----------------------------------------------------------------------------------------


def test_reset_reuses_until_max_uses(kitchen):
    with rf.load_pool(kitchen, 1, runtime="process", reset="counter", max_uses=2) as pool:
        with pool.env(timeout=30) as first:
            first.add(1)
        with pool.env(timeout=30) as second:
            assert second.add(1) == 3
        assert second is first  # reset succeeded: the same environment came back
        with pool.env(timeout=30) as third:
            assert third.id != first.id  # used twice: replaced
        assert wait_until(lambda: first.closed)


def test_reset_runs_before_the_first_hand_out_too(kitchen):
    resets: list[str] = []

    @rf.hookimpl(wrapper=True)
    def rayfine_call(call):
        if call.method == "counter":
            resets.append(call.env_id)
        return (yield)

    plugin = register(types.SimpleNamespace(rayfine_call=rayfine_call), name="resets")
    try:
        with rf.load_pool(kitchen, 1, runtime="process", reset="counter") as pool:
            with pool.env(timeout=30) as env:
                assert resets == [env.id]  # reset (and Actor.__init__) ran before the hand-out
    finally:
        unregister(plugin)
    started = time.monotonic()
    with pytest.raises(errors.MethodNotFoundError):  # a retry cannot help: at once
        rf.load_pool(kitchen, 1, runtime="process", reset="nope")
    assert time.monotonic() - started < 20
    with pytest.raises(errors.RemoteException, match="boom"):  # fails every time: backs off, then
        rf.load_pool(kitchen, 1, runtime="process", reset="fail")
    assert rf.list_active_environments() == []


# -- deaths ---------------------------------------------------------------------------------------


def test_environments_killed_while_idle_are_replaced(kitchen):
    with rf.load_pool(kitchen, 2, runtime="process", health_interval=0.2) as pool:
        victims = [member_env(pool, i) for i in range(2)]
        for env in victims:
            kill(env)
        assert wait_until(lambda: all(env.closed for env in victims))  # found by health checks
        pool.wait_ready(timeout=30)
        with pool.env(timeout=30) as env:
            assert env.id not in {v.id for v in victims} and env.add(1) == 3


def member_env(pool: rf.Pool, index: int) -> rf.Environment:
    return [
        e for e in map(rf.get_environment, rf.list_active_environments()) if pool_of(e) == pool.name
    ][index]


def pool_of(env: rf.Environment) -> str:
    records = process().list_containers({"rayfine.env_id": env.id})
    return records[0].labels.get(POOL_LABEL, "") if records else ""


def test_a_dead_idle_environment_is_never_handed_out(kitchen):
    with rf.load_pool(kitchen, 2, runtime="process", health_interval=0) as pool:
        for i in range(2):
            kill(member_env(pool, i))
        time.sleep(0.3)  # dead, and no background check will notice
        with pool.env(timeout=30) as env:
            assert env.add(1) == 3  # the liveness check at hand-out retired both dead ones


def test_environment_killed_while_acquired(kitchen):
    with rf.load_pool(kitchen, 1, runtime="process") as pool:
        with pool.env() as env:
            kill(env)
            with pytest.raises(errors.ContainerDiedError):
                env.add(1)
        with pool.env(timeout=30) as fresh:
            assert fresh.add(1) == 3
    assert rf.list_active_environments() == []


# -- starts that fail -----------------------------------------------------------------------------


def test_an_image_that_cannot_load_fails_fast(process_image):
    started = time.monotonic()
    with pytest.raises(errors.EnvLoadError, match="cannot import"):
        rf.load_pool(process_image("import-fails"), 2, runtime="process")
    assert time.monotonic() - started < 20
    assert rf.list_active_environments() == []


class Broken(ProcessRuntime):
    """A runtime whose engine refuses every start (transiently, as far as Rayfine can tell)."""

    name = "broken"
    attempts: ClassVar[list[float]] = []

    def start(self, request):
        Broken.attempts.append(time.monotonic())
        raise errors.StartError("the engine said no (test)")


@pytest.fixture
def broken():
    @rf.hookimpl
    def rayfine_runtimes():
        yield rf.RuntimeSpec(name="broken", factory=Broken)

    name = register(types.SimpleNamespace(rayfine_runtimes=rayfine_runtimes), name="broken")
    Broken.attempts = []
    try:
        yield
    finally:
        unregister(name)


def test_failing_starts_back_off_exponentially(kitchen, broken):
    pool = rf.load_pool(kitchen, 3, runtime="broken", wait=False)
    try:
        time.sleep(4.5)
        status = pool.status()
        assert status.failing and status.ready == 0 and "the engine said no" in status.last_error
        attempts = list(Broken.attempts)
        # One round of 3 at once, then one probe per back-off: 0.5, 1, 2 s (+-20%): not a spin.
        assert 4 <= len(attempts) <= 6, attempts
        probes = [b - a for a, b in zip(attempts[2:], attempts[3:])]
        assert all(later > earlier for earlier, later in zip(probes, probes[1:])), probes
        with pytest.raises(errors.StartError, match="cannot start environments") as info:
            pool.acquire(timeout=30)
        assert isinstance(info.value.__cause__, errors.StartError)
        assert "retries in the background" in str(info.value)
    finally:
        pool.close()
    assert rf.list_active_environments() == []


# -- closing --------------------------------------------------------------------------------------


def test_close_stops_environments_in_use_and_starting(kitchen):
    pool = rf.load_pool(kitchen, 2, runtime="process", name="unit-close")
    held = pool.acquire()
    pool.close()
    assert held.closed and containers_of("unit-close") == []
    with pytest.raises(errors.EnvironmentClosedError):
        held.add(1)
    pool.release(held)  # after close: nothing to do
    assert rf.list_active_environments() == []


def test_close_while_filling(kitchen):
    pool = rf.load_pool(kitchen, 3, runtime="process", wait=False, name="unit-filling")
    time.sleep(0.2)
    pool.close()
    assert containers_of("unit-filling") == []
    assert rf.list_active_environments() == []


def test_cleanup_all_environments_closes_the_pool_instead_of_refilling(kitchen):
    pool = rf.load_pool(kitchen, 2, runtime="process", name="unit-outside")
    rf.cleanup_all_environments()
    assert wait_until(lambda: pool.closed)
    time.sleep(1.0)
    assert containers_of("unit-outside") == [] and rf.list_active_environments() == []
    with pytest.raises(errors.EnvironmentClosedError):
        pool.acquire()


def test_a_user_cleanup_of_an_acquired_environment_is_fine(kitchen):
    with rf.load_pool(kitchen, 1, runtime="process") as pool:
        with pool.env() as env:
            env.cleanup()
        with pool.env(timeout=30) as fresh:
            assert fresh.add(1) == 3


def test_threads_share_a_pool(kitchen):
    results, failures = [], []
    with rf.load_pool(kitchen, 3, runtime="process") as pool:

        def episode(i: int) -> None:
            try:
                with pool.env(timeout=60) as env:
                    results.append(env.add(i))
            except Exception as exc:
                failures.append(exc)

        threads = [threading.Thread(target=episode, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    assert failures == [] and sorted(results) == [i + 2 for i in range(8)]
    assert rf.list_active_environments() == []


# -- asyncio --------------------------------------------------------------------------------------


def test_async_pool(kitchen):
    async def main():
        async with rf.aload_pool(kitchen, 2, runtime="process", name="unit-async") as pool:
            assert isinstance(pool, rf.AsyncPool) and pool.status().ready == 2
            ticks = 0

            async def ticker():
                nonlocal ticks
                while True:
                    ticks += 1
                    await asyncio.sleep(0.01)

            beat = asyncio.ensure_future(ticker())

            async def episode(i):
                async with pool.env(timeout=60) as env:
                    assert isinstance(env, rf.AsyncEnvironment)
                    return await env.add(i)

            results = await asyncio.gather(*(episode(i) for i in range(6)))
            beat.cancel()
            assert results == [i + 2 for i in range(6)]
            assert ticks > 10  # the loop kept running while acquires waited for refills
            return pool

    pool = asyncio.run(main())
    assert pool.closed and containers_of("unit-async") == []


def test_a_cancelled_acquire_leaves_the_pool_consistent(kitchen):
    async def main():
        pool = await rf.aload_pool(kitchen, 1, runtime="process", max_envs=1)
        try:
            env = await pool.acquire()
            waiting = asyncio.ensure_future(pool.acquire())
            await asyncio.sleep(0.2)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            pool.release(env)
            again = await pool.acquire(timeout=30)
            assert await again.add(1) == 3
            assert pool.status().in_use == 1
        finally:
            await pool.close()

    asyncio.run(main())
    assert rf.list_active_environments() == []


def test_a_cancelled_fill_leaves_nothing(kitchen):
    async def main():
        opening = rf.aload_pool(kitchen, 4, runtime="process", name="unit-cf", max_starting=1)
        task = asyncio.ensure_future(opening)
        await asyncio.sleep(0.3)  # one start at a time: the second, at most, is under way
        task.cancel()
        try:
            pool = await task
        except asyncio.CancelledError:
            return
        await pool.close()
        pytest.fail("the pool filled before it could be cancelled")

    asyncio.run(main())
    assert containers_of("unit-cf") == [] and rf.list_active_environments() == []


def test_the_pool_package_sits_between_the_api_and_environment():
    """Nothing below ``pool`` imports it; ``pool`` imports nothing above it."""
    import re
    from pathlib import Path

    root = Path(rf.__file__).parent
    below = ["environment", "transport", "runtime", "plugins", "build"]
    for package in below:
        for path in (root / package).rglob("*.py"):
            assert not re.search(
                r"^\s*from\s+\.\.?pool\b|rayfine_core\.pool", path.read_text(), re.M
            ), path
    for path in (root / "pool").rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*from\s+\.\.(api|aio|cli)\b", text, re.M), path
