"""Every way a client process ends, offline: real processes on the ``process`` test runtime.

Each test runs a client in a subprocess, ends it one way (exit, signal at
several points of a start, SIGKILL, fork, worker threads) and checks what
is left in the store: nothing, except what the path says must survive.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import rayfine_core as rf
from rayfine_core.runtime import labels, reaper
from rayfine_core.testing.process_runtime import ProcessRuntime

PRELUDE = """
import json, os, signal, sys, threading, time, types
import rayfine_core as rf
from rayfine_core.testing.process_runtime import ProcessRuntime

ENGINE = '''
import pickle, sys, time
from rayfine_core.testing.process_runtime import ProcessRuntime
request = pickle.loads(sys.stdin.buffer.read())
time.sleep(float(sys.argv[1]))
handle = ProcessRuntime().start(request)
sys.stdout.buffer.write(pickle.dumps(handle))
'''

class Slow(ProcessRuntime):
    # Like a real engine: another process, which creates the container a while after being
    # asked, whatever happens to the client meanwhile.
    name = "slow"
    def start(self, request):
        import pickle, subprocess
        line = json.dumps({"starting": request.labels["rayfine.env_id"]}) + "\\n"
        os.write(1, line.encode())  # one write: starts in several threads must not interleave
        engine = subprocess.run(
            [sys.executable, "-c", ENGINE, os.environ.get("SLOW_START", "1.5")],
            input=pickle.dumps(request), capture_output=True, start_new_session=True,
        )
        return pickle.loads(engine.stdout)

@rf.hookimpl
def rayfine_runtimes():
    yield rf.RuntimeSpec(name="slow", factory=Slow)

from rayfine_core.plugins import register
register(types.SimpleNamespace(rayfine_runtimes=rayfine_runtimes), name="slow")

def report(**kw):
    print(json.dumps(kw), flush=True)
"""


def client(body: str, image: str, **env: str) -> subprocess.Popen[str]:
    code = PRELUDE + f"\nIMAGE = {image!r}\n" + textwrap.dedent(body)
    return subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )


def read(proc: subprocess.Popen[str]) -> dict:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, f"the client exited early with {proc.wait()}"
    return json.loads(line)


def left(env_id: str) -> list:
    return ProcessRuntime().list_containers({labels.ENV_ID: env_id})


def wait_until(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("how", ["exit", "exception", "sys.exit", "SIGTERM", "SIGHUP", "SIGINT"])
def test_client_ending_while_idle_removes_its_environment(kitchen, how):
    body = """
    env = rf.load_env(IMAGE, runtime="process")
    report(env_id=env.id)
    if sys.argv[-1:] == ["exception"]:
        raise RuntimeError("the client crashed")
    if os.environ["HOW"] in ("exit", "exception"):
        raise SystemExit(0) if os.environ["HOW"] == "exit" else RuntimeError("crash")
    if os.environ["HOW"] == "sys.exit":
        sys.exit(3)
    time.sleep(60)
    """
    proc = client(body, kitchen, HOW=how)
    env_id = read(proc)["env_id"]
    assert left(env_id)
    if how.startswith("SIG"):
        proc.send_signal(getattr(signal, how))
    proc.wait(30)
    assert wait_until(lambda: not left(env_id)), f"{how} left the environment behind"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signal_during_a_start_leaves_nothing(kitchen, signum):
    body = """
    rf.load_env(IMAGE, runtime="slow")
    report(started=True)
    time.sleep(60)
    """
    proc = client(body, kitchen)
    env_id = read(proc)["starting"]
    time.sleep(0.3)  # inside the engine's start
    proc.send_signal(signum)
    proc.wait(30)
    time.sleep(1.5)  # the engine would have created it by now
    assert not left(env_id), f"signal {signum} during the start leaked a container"


def test_sigterm_during_many_async_starts_leaves_nothing(kitchen):
    body = """
    import asyncio
    async def main():
        await rf.aload_envs(IMAGE, 5, runtime="slow")
    asyncio.run(main())
    """
    proc = client(body, kitchen, SLOW_START="1.0")
    ids = [read(proc)["starting"] for _ in range(5)]
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    time.sleep(1.5)
    assert not any(left(env_id) for env_id in ids)


def test_sigterm_after_a_load_from_a_worker_thread_cleans_up(kitchen):
    body = """
    out = {}
    thread = threading.Thread(target=lambda: out.setdefault("env", rf.load_env(IMAGE, runtime="process")))
    thread.start(); thread.join()
    report(env_id=out["env"].id)
    time.sleep(60)
    """
    proc = client(body, kitchen)
    env_id = read(proc)["env_id"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == -signal.SIGTERM
    assert wait_until(lambda: not left(env_id))


def test_the_applications_own_signal_handler_is_not_preempted(kitchen):
    body = """
    reloads = []
    signal.signal(signal.SIGHUP, lambda *a: reloads.append(1))
    env = rf.load_env(IMAGE, runtime="process")
    report(env_id=env.id)
    while not reloads:
        time.sleep(0.05)
    report(after_reload=env.add(1))
    env.cleanup()
    """
    proc = client(body, kitchen)
    env_id = read(proc)["env_id"]
    proc.send_signal(signal.SIGHUP)
    assert read(proc) == {"after_reload": 3}
    assert proc.wait(30) == 0
    assert not left(env_id)


def test_sigkill_leaves_an_orphan_the_next_process_reaps(kitchen):
    body = """
    env = rf.load_env(IMAGE, runtime="process")
    report(env_id=env.id)
    time.sleep(60)
    """
    proc = client(body, kitchen)
    env_id = read(proc)["env_id"]
    proc.kill()
    proc.wait()
    assert left(env_id), "nothing can clean up after SIGKILL"
    removed = reaper.reap(rf.get_runtime("process"))
    assert env_id in {r.labels[labels.ENV_ID] for r in removed}
    assert not left(env_id)


def test_a_forked_child_never_cleans_up_its_parents_environments(kitchen):
    body = """
    env = rf.load_env(IMAGE, runtime="process")
    pid = os.fork()
    if pid == 0:
        mine = rf.load_env(IMAGE, runtime="process")
        labels = rf.get_runtime("process").list_containers({"rayfine.env_id": mine.id})[0].labels
        report(child_env=mine.id, child_pid=labels["rayfine.pid"], same=env.add(1))
        sys.exit(0)  # exit hooks run here: they must stop only the child's environment
    os.waitpid(pid, 0)
    report(parent_env=env.id, parent_still=env.add(2))
    env.cleanup()
    """
    proc = client(body, kitchen)
    child = read(proc)
    parent = read(proc)
    assert proc.wait(30) == 0
    assert child["same"] == 3 and parent["parent_still"] == 4
    assert int(child["child_pid"]) != proc.pid
    assert not left(child["child_env"]) and not left(parent["parent_env"])


def test_multiprocessing_fork_workers_keep_their_environments(kitchen):
    body = """
    import multiprocessing
    def work(i):
        env = rf.load_env(IMAGE, runtime="process")
        try:
            # another Rayfine process reaping now must not see this worker as dead
            from rayfine_core.runtime import reaper
            reaper.reap(rf.get_runtime("process"))
            return env.add(i)
        finally:
            env.cleanup()
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        report(results=pool.map(work, range(4)))
    """
    proc = client(body, kitchen)
    assert read(proc) == {"results": [2, 3, 4, 5]}
    assert proc.wait(60) == 0


def test_async_start_cancelled_leaves_nothing(kitchen):
    body = """
    import asyncio
    async def main():
        task = asyncio.ensure_future(rf.aload_env(IMAGE, runtime="slow"))
        await asyncio.sleep(0.3)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            report(cancelled=True, active=rf.list_active_environments())
    asyncio.run(main())
    """
    proc = client(body, kitchen)
    env_id = read(proc)["starting"]
    assert read(proc) == {"cancelled": True, "active": []}
    assert proc.wait(30) == 0
    assert not left(env_id)
