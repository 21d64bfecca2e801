"""Host-wide limits on starts, offline: slots shared by processes, waits, typed refusals, SIGKILL."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import types

import pytest

import rayfine_core as rf
from rayfine_core import errors
from rayfine_core.environment import hostlimits, steps
from rayfine_core.plugins import register, unregister
from rayfine_core.testing.process_runtime import ProcessRuntime


@pytest.fixture(autouse=True)
def _private_run_root(tmp_path_factory, monkeypatch):
    """Slots of these tests are theirs alone (children inherit the variable)."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path_factory.mktemp("run")))
    for variable in ("MAX_STARTS", "MAX_RUNNING", "START_RATE", "WAIT"):
        monkeypatch.delenv(f"RAYFINE_HOST_{variable}", raising=False)


HOLDER = """
import os, sys, time
from rayfine_core.environment import hostlimits, steps
for i in range(int(sys.argv[1])):
    steps.run(hostlimits.admit(f"holder-{i}"))
print("held", flush=True)
if len(sys.argv) > 2 and sys.argv[2] == "fork":
    pid = os.fork()
    if pid == 0:  # the child inherits no lock: its parent's slots stay its parent's
        print(json.dumps({u.kind: u.holders for u in hostlimits.usage()}), flush=True)
        os._exit(0)
    os.waitpid(pid, 0)
time.sleep(120)
"""


def holder(slots: int, *extra: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", "import json\n" + HOLDER, str(slots), *extra],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_defaults_and_bad_settings(monkeypatch):
    limits = hostlimits.current()
    assert limits.max_starts == 2 * len(os.sched_getaffinity(0))
    assert (limits.max_running, limits.start_rate, limits.wait) == (1024, 0.0, 300.0)
    for variable, value in [
        ("RAYFINE_HOST_MAX_STARTS", "0"),
        ("RAYFINE_HOST_MAX_STARTS", "two"),
        ("RAYFINE_HOST_MAX_STARTS", "1.5"),
        ("RAYFINE_HOST_MAX_RUNNING", "-1"),
        ("RAYFINE_HOST_START_RATE", "fast"),
        ("RAYFINE_HOST_START_RATE", "nan"),
        ("RAYFINE_HOST_WAIT", "-3"),
    ]:
        monkeypatch.setenv(variable, value)
        with pytest.raises(errors.ValidationError, match=variable):
            hostlimits.current()
        monkeypatch.delenv(variable)


def test_another_process_holding_every_slot_makes_starts_wait_then_refuse(monkeypatch):
    monkeypatch.setenv("RAYFINE_HOST_MAX_STARTS", "2")
    monkeypatch.setenv("RAYFINE_HOST_WAIT", "0.5")
    proc = holder(2)
    try:
        started = time.monotonic()
        with pytest.raises(errors.CapacityError) as info:
            steps.run(hostlimits.admit("mine"))
        assert 0.4 < time.monotonic() - started < 5
        text = str(info.value)
        assert "RAYFINE_HOST_MAX_STARTS=2" in text and f"pid {proc.pid} (2)" in text
        assert "raise RAYFINE_HOST_MAX_STARTS" in text and "RAYFINE_HOST_WAIT" in text
        usage = {u.kind: u for u in hostlimits.usage()}
        assert usage["starts"].taken == 2 and usage["starts"].holders == {proc.pid: 2}
        # SIGKILL: no cleanup code runs, yet the kernel frees the holder's slots.
        proc.kill()
        proc.wait()
        monkeypatch.setenv("RAYFINE_HOST_WAIT", "5")
        steps.run(hostlimits.admit("mine"))
        assert hostlimits.usage()[0].holders == {os.getpid(): 1}
    finally:
        proc.kill()
        hostlimits.release("mine")
    assert hostlimits.usage()[0].taken == 0


def test_a_waiting_start_takes_the_slot_once_another_process_frees_it(monkeypatch):
    monkeypatch.setenv("RAYFINE_HOST_MAX_STARTS", "1")
    proc = holder(1)
    try:
        threading.Timer(0.5, proc.kill).start()
        started = time.monotonic()
        steps.run(hostlimits.admit("waiter"))
        assert 0.4 < time.monotonic() - started < 5
    finally:
        proc.kill()
        hostlimits.release("waiter")


def test_forked_children_do_not_inherit_slots():
    proc = holder(1, "fork")
    try:
        assert proc.stdout is not None
        seen = json.loads(proc.stdout.readline())
        assert seen["starts"] == {str(proc.pid): 1}  # held by the parent, not the child
        assert {u.kind: u.holders for u in hostlimits.usage()}["starts"] == {proc.pid: 1}
    finally:
        proc.kill()


def test_the_running_cap_bounds_environments(kitchen, monkeypatch):
    monkeypatch.setenv("RAYFINE_HOST_MAX_RUNNING", "2")
    monkeypatch.setenv("RAYFINE_HOST_WAIT", "0.5")
    first = rf.load_env(kitchen, runtime="process")
    second = rf.load_env(kitchen, runtime="process")
    try:
        with pytest.raises(errors.CapacityError, match="RAYFINE_HOST_MAX_RUNNING=2"):
            rf.load_env(kitchen, runtime="process")
        assert len(rf.list_active_environments()) == 2  # the refused one left nothing
        first.cleanup()
        with rf.load_env(kitchen, runtime="process") as third:
            assert third.add(1) == 3
    finally:
        first.cleanup()
        second.cleanup()
    assert {u.kind: u.taken for u in hostlimits.usage()} == {"starts": 0, "running": 0}


class Slow(ProcessRuntime):
    """Starts take a while, as on a busy engine; counts how many run at once."""

    name = "slow-limits"
    lock = threading.Lock()
    now = most = 0

    def start(self, request):
        with Slow.lock:
            Slow.now += 1
            Slow.most = max(Slow.most, Slow.now)
        try:
            time.sleep(0.4)
            return super().start(request)
        finally:
            with Slow.lock:
                Slow.now -= 1


@pytest.fixture
def slow():
    @rf.hookimpl
    def rayfine_runtimes():
        yield rf.RuntimeSpec(name="slow-limits", factory=Slow)

    name = register(types.SimpleNamespace(rayfine_runtimes=rayfine_runtimes), name="slow-limits")
    Slow.now = Slow.most = 0
    try:
        yield
    finally:
        unregister(name)


def test_starts_in_flight_are_capped_for_a_whole_pool(kitchen, slow, monkeypatch):
    monkeypatch.setenv("RAYFINE_HOST_MAX_STARTS", "2")
    with rf.load_pool(kitchen, 5, runtime="slow-limits", max_starting=5) as pool:
        assert pool.status().ready == 5
    assert Slow.most <= 2


def test_the_start_rate_spaces_starts(monkeypatch):
    monkeypatch.setenv("RAYFINE_HOST_START_RATE", "5")
    owners = [f"rate-{i}" for i in range(4)]
    started = time.monotonic()
    try:
        for owner in owners:
            steps.run(hostlimits.admit(owner))
    finally:
        for owner in owners:
            hostlimits.release(owner)
    assert time.monotonic() - started >= 0.55  # 4 starts at 5/s: 3 gaps of 0.2 s
    monkeypatch.setenv("RAYFINE_HOST_START_RATE", "0.01")
    monkeypatch.setenv("RAYFINE_HOST_WAIT", "1")
    steps.run(hostlimits.admit("now"))  # its turn is now; the next one's in 100 s
    hostlimits.release("now")
    with pytest.raises(errors.CapacityError, match="RAYFINE_HOST_START_RATE=0.01/s"):
        steps.run(hostlimits.admit("too-late"))
    assert hostlimits.usage()[0].taken == 0


def test_a_cancelled_waiting_start_keeps_no_slot(kitchen, monkeypatch):
    monkeypatch.setenv("RAYFINE_HOST_MAX_STARTS", "1")
    proc = holder(1)

    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        beat = asyncio.ensure_future(ticker())
        task = asyncio.ensure_future(rf.aload_env(kitchen, runtime="process"))
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        beat.cancel()
        return ticks

    try:
        assert asyncio.run(main()) > 20  # the loop ran while the start waited for a slot
        assert rf.list_active_environments() == []
        assert {u.kind: u.holders for u in hostlimits.usage()}["starts"] == {proc.pid: 1}
    finally:
        proc.kill()


def test_an_environment_stopped_while_it_waits_for_a_slot_gives_up(kitchen, monkeypatch):
    monkeypatch.setenv("RAYFINE_HOST_MAX_STARTS", "1")
    proc = holder(1)
    try:
        pool = rf.load_pool(kitchen, 1, runtime="process", wait=False)
        time.sleep(0.5)  # its start waits for the holder's slot
        started = time.monotonic()
        pool.close()
        assert time.monotonic() - started < 5
        assert {u.kind: u.holders for u in hostlimits.usage()}["running"] == {proc.pid: 1}
    finally:
        proc.kill()
    assert rf.list_active_environments() == []


def test_a_process_stopping_for_exit_admits_no_more_starts(kitchen):
    code = textwrap.dedent(
        f"""
        import rayfine_core as rf
        from rayfine_core import errors
        from rayfine_core.environment import registry
        env = rf.load_env({kitchen!r}, runtime="process")
        registry.stop_all("exit")
        try:
            rf.load_env({kitchen!r}, runtime="process")
        except errors.EnvironmentClosedError as exc:
            print("refused:", exc)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "refused: This process is exiting" in out.stdout, out.stderr


COMPETITOR = """
import os, sys, time, types
import rayfine_core as rf
from rayfine_core.testing.process_runtime import ProcessRuntime

LOG = os.environ["STARTS_LOG"]

def note(what):
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(fd, f"{what} {time.monotonic()}\\n".encode())  # one append: never interleaved
    os.close(fd)

class Logged(ProcessRuntime):
    name = "logged"
    def start(self, request):
        note("begin")
        try:
            time.sleep(0.3)  # a busy engine
            return super().start(request)
        finally:
            note("end")

@rf.hookimpl
def rayfine_runtimes():
    yield rf.RuntimeSpec(name="logged", factory=Logged)

from rayfine_core.plugins import register
register(types.SimpleNamespace(rayfine_runtimes=rayfine_runtimes), name="logged")
with rf.load_pool(sys.argv[1], 3, runtime="logged", max_starting=3) as pool:
    print(pool.status().ready, flush=True)
"""


def test_processes_competing_for_start_slots_never_exceed_the_cap(kitchen, tmp_path, monkeypatch):
    monkeypatch.setenv("RAYFINE_HOST_MAX_STARTS", "2")
    log = tmp_path / "starts.log"
    env = {**os.environ, "STARTS_LOG": str(log)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", COMPETITOR, kitchen], stdout=subprocess.PIPE, text=True, env=env
        )
        for _ in range(3)
    ]
    outputs = [proc.communicate(timeout=120)[0].strip() for proc in procs]
    assert outputs == ["3", "3", "3"]
    events = sorted(
        (float(t), 1 if kind == "begin" else -1)
        for kind, t in (line.split() for line in log.read_text().splitlines())
    )
    in_flight = most = 0
    for _, step in events:
        in_flight += step
        most = max(most, in_flight)
    assert len(events) == 18 and most == 2  # 9 starts, never more than 2 engine calls at once
