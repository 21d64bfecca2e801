"""The life of an environment, offline, on the ``process`` test runtime: start, call, restart, stop."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import time
import types

import pytest

import rayfine_core as rf
from rayfine_core import errors
from rayfine_core.environment import life as life_module
from rayfine_core.plugins import register, unregister
from rayfine_core.testing.process_runtime import ProcessRuntime
from rayfine_core.transport import client as client_module


def process() -> ProcessRuntime:
    runtime = rf.get_runtime("process")
    assert isinstance(runtime, ProcessRuntime)
    return runtime


def alive(env: rf.Environment) -> bool:
    return process().health(env.handle.id).running


# -- start, call, stop --------------------------------------------------------------------


def test_start_call_and_cleanup(kitchen):
    with rf.load_env(kitchen, runtime="process", env_vars={"GREETING": "hi"}) as env:
        assert env.add(1) == 3 and env.add(2, b=5) == 7
        assert env.square(4) == 16 and env.env("GREETING") == "hi"
        assert env.is_ready() and env.id in rf.list_active_environments()
        assert rf.get_environment(env.id) is env
        assert {m.name for m in env.list_methods()} >= {"add", "echo", "square"}
        assert "add" in dir(env) and env.add.__doc__ == "Add two numbers."
        handle = env.handle
    assert env.closed and env.id not in rf.list_active_environments()
    assert process().health(handle.id).status == "removed"
    with pytest.raises(errors.EnvironmentClosedError):
        env.add(1)
    assert not env.is_ready()
    env.cleanup()  # idempotent


def test_typed_errors_of_calls(kitchen):
    with rf.load_env(kitchen, runtime="process") as env:
        with pytest.raises(errors.RemoteException) as info:
            env.fail("custom")
        assert info.value.remote_type == "ValueError" and "raise ValueError" in str(info.value)
        with pytest.raises(errors.MethodNotFoundError, match="available:.*add"):
            env.nope()
        with pytest.raises(errors.InvalidArgumentsError, match=r"add\(a: int, b: int = 2\)"):
            env.add(1, 2, 3)
        with pytest.raises(errors.InvalidArgumentsError, match="'bb'.*did you mean 'b'"):
            env.add(1, bb=2)
        with pytest.raises(errors.CallTimeout):
            env.sleep(5, timeout=0.3)
        with pytest.raises(errors.ValidationError, match="timeout must be"):
            env.add(1, timeout=-1)
        with pytest.raises(errors.ResultNotSerializableError):
            env.unserialisable()
        with pytest.raises(AttributeError):
            env._private()
        assert env.add(1) == 3


def test_arguments_must_encode(kitchen, monkeypatch):
    monkeypatch.setenv("RAYFINE_MAX_REQUEST_BYTES", "1000")
    with rf.load_env(kitchen, runtime="process") as env:
        with pytest.raises(errors.InvalidArgumentsError, match="JSON"):
            env.echo(object())
        with pytest.raises(errors.RequestTooLargeError, match="over the limit of 1000 bytes"):
            env.echo("x" * 2000)
        assert env.echo("fits") == {"args": ["fits"], "kwargs": {}}


def test_load_errors_leave_nothing(process_image):
    runtime = process()
    before = runtime.list_containers({})
    with pytest.raises(errors.EnvLoadError, match="cannot import its dependency"):
        rf.load_env(process_image("import-fails"), runtime="process")
    started = time.monotonic()
    with pytest.raises(errors.StartTimeout, match="within 2s") as info:
        rf.load_env(process_image("slow-import"), runtime="process", start_timeout=2)
    assert time.monotonic() - started < 10 and "API_KEY" not in str(info.value)
    with rf.load_env(process_image("init-fails"), runtime="process") as env:
        with pytest.raises(errors.ActorInitError, match="init exploded"):
            env.ping()
    assert runtime.list_containers({}) == before
    assert rf.list_active_environments() == []


def test_bad_options_fail_before_any_work(kitchen):
    cases = [
        {"image": "Not A Tag"},
        {"image": kitchen, "env_vars": {"BAD-NAME": "x"}},
        {"image": kitchen, "env_vars": {"K": "a\x00b"}},
        {"image": kitchen, "env_vars": {"RAYFINE_TOKEN": "x"}},
        {"image": kitchen, "container_name": "ok\n"},
        {"image": kitchen, "mem_limit": "lots"},
        {"image": kitchen, "transport": "pigeon"},
        {"image": kitchen, "isolation": "gvisor"},
        {"image": kitchen, "mode": "elsewhere"},
    ]
    for case in cases:
        with pytest.raises(errors.ValidationError) as info:
            rf.load_env(runtime="process", **case)
        assert "a\x00b" not in str(info.value)
    assert rf.list_active_environments() == []


def test_secrets_stay_out_of_reprs(kitchen):
    with rf.load_env(kitchen, runtime="process", env_vars={"API_KEY": "hunter2-secret"}) as env:
        life = rf.get_environment(env.id)._life
        for text in (repr(env), repr(life), repr(life.options), repr(life._current)):
            assert "hunter2-secret" not in text


# -- death and restart ----------------------------------------------------------------------


def test_death_is_typed_and_restart_replaces_the_container(kitchen):
    with rf.load_env(kitchen, runtime="process") as env:
        handle = env.handle
        with pytest.raises(errors.ContainerDiedError) as info:
            env.die(3)
        assert info.value.exit_code == 3 and "stopped during die()" in str(info.value)
        assert process().health(handle.id).status == "removed"  # not left behind till cleanup
        with pytest.raises(errors.ContainerDiedError, match="no container any more.*restart=True"):
            env.add(1)
    with rf.load_env(kitchen, runtime="process", restart=True) as env:
        first = env.handle.id
        with pytest.raises(errors.ContainerDiedError):
            env.die(4)
        assert env.add(1) == 3 and env.handle.id != first
        assert process().health(first).status == "removed"


def test_calls_during_a_restart_wait_for_the_new_container(kitchen):
    with rf.load_env(kitchen, runtime="process", restart=True) as env:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            dying = pool.submit(env.die, 5)
            time.sleep(0.05)
            later = [pool.submit(env.add, i) for i in range(8)]
            with pytest.raises(errors.ContainerDiedError):
                dying.result(30)
            results = []
            for future in later:
                try:
                    results.append(future.result(30))
                except errors.ContainerDiedError:
                    results.append("died")  # it was in flight when the container died
            assert all(r == "died" or r == i + 2 for i, r in enumerate(results))
        assert env.add(1) == 3


def test_container_removed_by_someone_else_says_so(kitchen):
    with rf.load_env(kitchen, runtime="process") as env:
        pool = concurrent.futures.ThreadPoolExecutor(1)
        call = pool.submit(env.sleep, 5)
        time.sleep(0.3)
        process().stop(env.handle.id, timeout=0)
        with pytest.raises(errors.ContainerDiedError, match="removed by something other"):
            call.result(15)
        pool.shutdown()


def test_a_call_on_a_paused_container_gives_up(kitchen, monkeypatch):
    monkeypatch.setattr(client_module, "WATCH_EVERY", 0.2)
    monkeypatch.setattr(life_module, "PAUSED_LIMIT", 0.5)
    with rf.load_env(kitchen, runtime="process") as env:
        pid = process().pid(env.handle.id)
        os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(errors.ContainerPausedError, match="paused"):
                env.add(1)
            assert time.monotonic() - started < 5
        finally:
            os.kill(pid, signal.SIGCONT)
        assert env.add(1) == 3


def test_a_call_in_flight_during_cleanup_says_cleaned_up(kitchen):
    env = rf.load_env(kitchen, runtime="process")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        call = pool.submit(env.sleep, 5)
        time.sleep(0.3)
        env.cleanup()
        with pytest.raises(errors.EnvironmentClosedError, match="in flight"):
            call.result(15)


# -- a failing stop is retried ------------------------------------------------------------


class FlakyStop(ProcessRuntime):
    """The process runtime, with an engine that is down for the first stops."""

    name = "flaky"
    failures = 0

    def stop(self, container_id: str, timeout: float = 5.0) -> None:
        if FlakyStop.failures > 0:
            FlakyStop.failures -= 1
            raise errors.EngineUnavailableError("the engine is down (test)")
        super().stop(container_id, timeout)


@pytest.fixture
def flaky():
    @rf.hookimpl
    def rayfine_runtimes():
        yield rf.RuntimeSpec(name="flaky", factory=FlakyStop)

    name = register(types.SimpleNamespace(rayfine_runtimes=rayfine_runtimes), name="flaky")
    try:
        yield rf.get_runtime("flaky")
    finally:
        unregister(name)


def test_a_failed_cleanup_is_retried_until_it_succeeds(kitchen, flaky):
    env = rf.load_env(kitchen, runtime="flaky")  # the image is in the store "process" shares
    FlakyStop.failures = 2
    with pytest.raises(errors.EngineUnavailableError):
        env.cleanup()
    assert env.id in rf.list_active_environments() and env.closed
    with pytest.raises(errors.EnvironmentClosedError):
        env.add(1)
    assert rf.cleanup_all_environments() == 0  # the engine is still down for the second try
    env.cleanup()
    assert env.id not in rf.list_active_environments()
    assert flaky.health(env.handle.id).status == "removed"


class SlowToSchedule(ProcessRuntime):
    """A runtime whose engine gives up on the start with its own StartTimeout (a cluster
    that could not schedule the pod in time), after creating nothing."""

    name = "unschedulable"

    def start(self, request):
        time.sleep(0.2)
        raise errors.StartTimeout("Job x did not start within 0.2s: no pod was created (test)")


def test_a_runtimes_own_start_timeout_reaches_the_caller(kitchen):
    """On Python >= 3.11 a StartTimeout is also a concurrent.futures.TimeoutError: it must
    not be taken for "the engine has not finished starting" (seen on Kubernetes in CI)."""

    @rf.hookimpl
    def rayfine_runtimes():
        yield rf.RuntimeSpec(name="unschedulable", factory=SlowToSchedule)

    name = register(types.SimpleNamespace(rayfine_runtimes=rayfine_runtimes), name="slow-sched")
    try:
        with pytest.raises(errors.StartTimeout, match="no pod was created"):
            rf.load_env(kitchen, runtime="unschedulable")
        assert rf.list_active_environments() == []
    finally:
        unregister(name)


# -- hooks around the life ---------------------------------------------------------------


def test_call_wrappers_time_retry_and_refuse(kitchen):
    seen: list[tuple[str, int]] = []

    @rf.hookimpl(wrapper=True)
    def rayfine_call(call):
        if call.method == "counter" and call.kwargs.get("refuse"):
            raise PermissionError("refused by policy")
        seen.append((call.method, call.attempt))
        try:
            return (yield)
        except errors.RemoteException:
            if call.method == "fail" and call.attempt == 1:
                return (yield)  # retried once; fails again
            raise

    name = register(types.SimpleNamespace(rayfine_call=rayfine_call), name="wrapper")
    try:
        with rf.load_env(kitchen, runtime="process") as env:
            assert env.add(1) == 3
            with pytest.raises(errors.RemoteException):
                env.fail()
            assert seen == [("add", 1), ("fail", 1)]
    finally:
        unregister(name)


def test_observer_hooks_that_raise_change_nothing_and_start_hooks_may_refuse(kitchen, caplog):
    @rf.hookimpl
    def rayfine_health(handle, ready, elapsed, error):
        raise RuntimeError("observer bug")

    name = register(types.SimpleNamespace(rayfine_health=rayfine_health), name="buggy")
    try:
        with rf.load_env(kitchen, runtime="process") as env:
            assert env.add(1) == 3
        assert "observer bug" in caplog.text
    finally:
        unregister(name)

    @rf.hookimpl
    def rayfine_start(request, runtime):
        raise PermissionError("no starts on Fridays")

    name = register(types.SimpleNamespace(rayfine_start=rayfine_start), name="policy")
    try:
        before = process().list_containers({})
        with pytest.raises(errors.PluginError, match="'policy'.*no starts on Fridays"):
            rf.load_env(kitchen, runtime="process")
        assert process().list_containers({}) == before
        assert rf.list_active_environments() == []
    finally:
        unregister(name)


# -- detach and attach ---------------------------------------------------------------------


def test_detach_then_attach_by_name(kitchen):
    env = rf.load_env(kitchen, runtime="process", container_name="unit-detached")
    state_file = env.detach()
    assert state_file.exists() and oct(state_file.stat().st_mode)[-3:] == "600"
    assert env.id not in rf.list_active_environments()
    again = rf.attach("unit-detached")
    assert again.add(2) == 4 and again.id == env.id
    again.cleanup()
    assert not state_file.exists()
    with pytest.raises(errors.UnknownEnvironmentError, match="No detached environment"):
        rf.attach("unit-detached")
