"""Replica sets, offline on the ``process`` runtime: balancing, retries, deaths, replacement."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import time

import pytest

import rayfine_core as rf
from rayfine_core import errors
from rayfine_core.pool import POOL_LABEL
from rayfine_core.pool.replicas import never_arrived
from rayfine_core.testing.process_runtime import ProcessRuntime


@pytest.fixture(autouse=True)
def _private_run_root(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path_factory.mktemp("run")))


def process() -> ProcessRuntime:
    runtime = rf.get_runtime("process")
    assert isinstance(runtime, ProcessRuntime)
    return runtime


def kill(env) -> None:
    os.kill(process().pid(env.handle.id), signal.SIGKILL)


def wait_until(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_round_robin_spreads_calls_evenly(kitchen):
    with rf.load_replicas(kitchen, 3, runtime="process", load_balance="round_robin") as env:
        assert isinstance(env, rf.Replicas) and len(env) == 3
        assert [env.add(i) for i in range(9)] == [i + 2 for i in range(9)]
        assert sorted(e.counter() for e in env.envs) == [3, 3, 3]
        assert "add" in dir(env) and env.add.__doc__ == "Add two numbers."
        assert {m.name for m in env.list_methods()} >= {"add", "echo"} and env.is_ready()
        status = env.status()
        assert (status.kind, status.ready, status.target) == ("replicas", 3, 3)
    assert rf.list_active_environments() == []


def test_least_busy_places_held_work_on_distinct_replicas(kitchen):
    with rf.load_replicas(kitchen, 3, runtime="process") as env:
        with env.hold() as a, env.hold() as b, env.hold() as c:
            assert len({a.id, b.id, c.id}) == 3
            assert env.status().busy == 3
            assert env.pick().id in {a.id, b.id, c.id}
        assert env.status().busy == 0


def test_random_balancing_and_bad_names(kitchen):
    with rf.load_replicas(kitchen, 2, runtime="process", load_balance="random") as env:
        assert {env.add(i) for i in range(10)} == {i + 2 for i in range(10)}
    for bad in (dict(replicas=0), dict(replicas=-2), dict(replicas=2, load_balance="fastest")):
        with pytest.raises(errors.ValidationError):
            rf.load_replicas(kitchen, runtime="process", **bad)
    assert rf.list_active_environments() == []


def test_load_env_replicas_is_the_same_thing(kitchen):
    with rf.load_env(kitchen, runtime="process", replicas=2, load_balance="round_robin") as env:
        assert isinstance(env, rf.Replicas) and env.replicas == 2
        assert env.add(1) == 3
    with pytest.raises(errors.ValidationError, match="replicas must be"):
        rf.load_env(kitchen, runtime="process", replicas=0)
    with pytest.raises(errors.ValidationError, match="aload_replicas"):
        asyncio.run(rf.aload_env(kitchen, runtime="process", replicas=2))


def test_a_replica_killed_while_idle_costs_no_call(kitchen):
    with rf.load_replicas(kitchen, 3, runtime="process", health_interval=0) as env:
        victim = env.envs[0]
        kill(victim)
        time.sleep(0.2)
        # Calls that pick the dead replica cannot connect: they are resent, never lost.
        assert [env.add(i) for i in range(12)] == [i + 2 for i in range(12)]
        assert wait_until(lambda: victim.closed and env.status().ready == 3)
        assert victim.id not in {e.id for e in env.envs}


def test_a_call_in_flight_when_its_replica_dies_raises(kitchen):
    with rf.load_replicas(kitchen, 2, runtime="process") as env:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            with env.hold() as pinned:  # the long call goes to the other replica
                long_call = pool.submit(env.sleep, 3)
                time.sleep(0.5)
                (busy,) = [e for e in env.envs if e.id != pinned.id]
            kill(busy)
            with pytest.raises(errors.ContainerDiedError) as info:
                long_call.result(30)
            assert not never_arrived(info.value)  # it reached the server: not resent
            others = [pool.submit(env.add, i) for i in range(6)]
            assert [f.result(30) for f in others] == [i + 2 for i in range(6)]
        assert wait_until(lambda: env.status().ready == 2 and busy.closed)


def test_when_every_replica_dies_calls_wait_for_replacements(kitchen):
    with rf.load_replicas(kitchen, 2, runtime="process", health_interval=0.2) as env:
        for each in env.envs:
            kill(each)
        time.sleep(0.3)  # gone: a call cannot connect (a kept-alive connection could have sent it)
        assert env.add(5, timeout=30) == 7


def test_never_arrived_tells_connect_failures_apart():
    refused = errors.TransportError("refused", connect_failed=True)
    died = errors.ContainerDiedError("gone", 137, False)
    died.__cause__ = refused
    assert never_arrived(refused) and never_arrived(died)
    assert not never_arrived(errors.TransportError("reset by peer"))
    assert not never_arrived(errors.ContainerDiedError("gone", 137, False))
    assert not never_arrived(errors.CallTimeout("slow"))


def test_async_replicas(kitchen):
    async def main():
        async with rf.aload_replicas(kitchen, 2, runtime="process", name="unit-arep") as env:
            assert isinstance(env, rf.AsyncReplicas)
            results = await asyncio.gather(*(env.add(i) for i in range(50)))
            assert results == [i + 2 for i in range(50)]
            assert await env.is_ready()
            async with env.hold() as one:
                assert isinstance(one, rf.AsyncEnvironment)
            assert (await env.pick()).id in {e.id for e in env.envs}

    asyncio.run(main())
    assert process().list_containers({POOL_LABEL: "unit-arep"}) == []
