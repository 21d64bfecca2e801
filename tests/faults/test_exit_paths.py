"""Every way a client process ends: real client processes, on every runtime.

Each test runs a client in a subprocess, ends it one way (exit, signals
while idle and at several points of a start, SIGKILL, fork, worker threads,
a cancelled task) and checks what is left: nothing, except what the path
says must survive.  Each test runs on the ``process`` test runtime (offline)
and, marked ``engine``, on docker and podman.  The ``slow`` runtime models
an engine that creates the container a while after being asked, whatever
happens to the client meanwhile (a separate "engine" process), so a start
interrupted at that moment is tested deterministically.
"""

from __future__ import annotations

import signal
import subprocess
import time

import exit_clients
import pytest
from exit_clients import read, wait_until

import rayfine_core as rf
from rayfine_core.runtime import labels, reaper

RUNTIMES = [
    pytest.param("process", id="process"),
    pytest.param("docker", id="docker", marks=pytest.mark.engine),
    pytest.param("podman", id="podman", marks=pytest.mark.engine),
]


@pytest.fixture(params=RUNTIMES)
def target(request, sample_image) -> tuple[str, str]:
    """(runtime, image of the kitchen-sink env built for it)."""
    return request.param, sample_image("kitchen-sink", request.param)


@pytest.fixture
def slow_target(process_image) -> tuple[str, str]:
    """The process runtime (the ``slow`` engine model wraps it)."""
    return "process", process_image("kitchen-sink")


def client(body: str, target: tuple[str, str], **env: str) -> subprocess.Popen[str]:
    runtime, image = target
    setup = f"\nIMAGE = {image!r}\nRUNTIME = {runtime!r}\n"
    return exit_clients.client(setup, body, **{"SLOW_REPORT": "1", **env})


def left(env_id: str, runtime: str = "process") -> list:
    return rf.get_runtime(runtime).list_containers({labels.ENV_ID: env_id})


@pytest.mark.parametrize("how", ["exit", "exception", "sys.exit", "SIGTERM", "SIGHUP", "SIGINT"])
def test_client_ending_while_idle_removes_its_environment(target, how):
    body = """
    env = rf.load_env(IMAGE, runtime=RUNTIME)
    report(env_id=env.id)
    sys.stdin.readline() if not os.environ["HOW"].startswith("SIG") else None  # seen first
    if os.environ["HOW"] in ("exit", "exception"):
        raise SystemExit(0) if os.environ["HOW"] == "exit" else RuntimeError("crash")
    if os.environ["HOW"] == "sys.exit":
        sys.exit(3)
    time.sleep(60)
    """
    proc = client(body, target, HOW=how)
    env_id = read(proc)["env_id"]
    assert left(env_id, target[0])
    if how.startswith("SIG"):
        proc.send_signal(getattr(signal, how))
    else:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    proc.wait(30)
    assert wait_until(lambda: not left(env_id, target[0])), f"{how} left the environment behind"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signal_during_a_start_leaves_nothing(slow_target, signum):
    body = """
    rf.load_env(IMAGE, runtime="slow")
    report(started=True)
    time.sleep(60)
    """
    proc = client(body, slow_target)
    env_id = read(proc)["starting"]
    time.sleep(0.3)  # inside the engine's start
    proc.send_signal(signum)
    proc.wait(30)
    time.sleep(1.5)  # the engine would have created it by now
    assert not left(env_id), f"signal {signum} during the start leaked a container"


def test_sigterm_during_many_async_starts_leaves_nothing(slow_target):
    body = """
    import asyncio
    async def main():
        await rf.aload_envs(IMAGE, 5, runtime="slow")
    asyncio.run(main())
    """
    proc = client(body, slow_target, SLOW_START="1.0")
    ids = [read(proc)["starting"] for _ in range(5)]
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    time.sleep(1.5)
    assert not any(left(env_id) for env_id in ids)


def test_sigterm_after_a_load_from_a_worker_thread_cleans_up(target):
    body = """
    out = {}
    thread = threading.Thread(target=lambda: out.setdefault("env", rf.load_env(IMAGE, runtime=RUNTIME)))
    thread.start(); thread.join()
    report(env_id=out["env"].id)
    time.sleep(60)
    """
    proc = client(body, target)
    env_id = read(proc)["env_id"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == -signal.SIGTERM
    assert wait_until(lambda: not left(env_id, target[0]))


def test_the_applications_own_signal_handler_is_not_preempted(target):
    body = """
    reloads = []
    signal.signal(signal.SIGHUP, lambda *a: reloads.append(1))
    env = rf.load_env(IMAGE, runtime=RUNTIME)
    report(env_id=env.id)
    while not reloads:
        time.sleep(0.05)
    report(after_reload=env.add(1))
    env.cleanup()
    """
    proc = client(body, target)
    env_id = read(proc)["env_id"]
    proc.send_signal(signal.SIGHUP)
    assert read(proc) == {"after_reload": 3}
    assert proc.wait(30) == 0
    assert not left(env_id, target[0])


def test_sigkill_leaves_an_orphan_the_next_process_reaps(target):
    body = """
    env = rf.load_env(IMAGE, runtime=RUNTIME)
    report(env_id=env.id)
    time.sleep(60)
    """
    proc = client(body, target)
    env_id = read(proc)["env_id"]
    proc.kill()
    proc.wait()
    assert left(env_id, target[0]), "nothing can clean up after SIGKILL"
    removed = reaper.reap(rf.get_runtime(target[0]))
    assert env_id in {r.labels[labels.ENV_ID] for r in removed}
    assert not left(env_id, target[0])


def test_a_forked_child_never_cleans_up_its_parents_environments(target):
    body = """
    env = rf.load_env(IMAGE, runtime=RUNTIME)
    pid = os.fork()
    if pid == 0:
        mine = rf.load_env(IMAGE, runtime=RUNTIME)
        labels = rf.get_runtime(RUNTIME).list_containers({"rayfine.env_id": mine.id})[0].labels
        report(child_env=mine.id, child_pid=labels["rayfine.pid"], same=env.add(1))
        sys.exit(0)  # exit hooks run here: they must stop only the child's environment
    os.waitpid(pid, 0)
    report(parent_env=env.id, parent_still=env.add(2))
    env.cleanup()
    """
    proc = client(body, target)
    child = read(proc)
    parent = read(proc)
    assert proc.wait(30) == 0
    assert child["same"] == 3 and parent["parent_still"] == 4
    assert int(child["child_pid"]) != proc.pid
    assert not left(child["child_env"], target[0]) and not left(parent["parent_env"], target[0])


def test_multiprocessing_fork_workers_keep_their_environments(target):
    body = """
    import multiprocessing
    def work(i):
        env = rf.load_env(IMAGE, runtime=RUNTIME)
        try:
            # another Rayfine process reaping now must not see this worker as dead
            from rayfine_core.runtime import reaper
            reaper.reap(rf.get_runtime(RUNTIME))
            return env.add(i)
        finally:
            env.cleanup()
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        report(results=pool.map(work, range(4)))
    """
    proc = client(body, target)
    assert read(proc) == {"results": [2, 3, 4, 5]}
    assert proc.wait(60) == 0


def test_async_start_cancelled_leaves_nothing(slow_target):
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
    proc = client(body, slow_target)
    env_id = read(proc)["starting"]
    assert read(proc) == {"cancelled": True, "active": []}
    assert proc.wait(30) == 0
    assert not left(env_id)


def test_a_detached_environment_is_not_an_orphan_even_without_the_label(target):
    body = """
    env = rf.load_env(IMAGE, runtime=RUNTIME)
    env.detach()
    report(env_id=env.id, name=env.name)
    time.sleep(60)
    """
    proc = client(body, target)
    info = read(proc)
    proc.kill()
    proc.wait()
    from rayfine_core.environment import rundir, statefiles

    assert not reaper.reap(rf.get_runtime(target[0]), rundir.forget, statefiles.is_detached)
    env = rf.attach(info["name"])
    assert env.add(1) == 3
    env.cleanup()
    assert not left(info["env_id"], target[0])


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("point", ["planning", "engine-start", "waiting-ready"])
def test_a_signal_at_any_point_of_a_real_start_leaves_nothing(target, sample_image, point, signum):
    runtime, _ = target
    image = sample_image("slow-import", runtime) if point == "waiting-ready" else target[1]
    body = """
    @rf.hookimpl
    def rayfine_start(request, runtime):
        report(starting=request.labels["rayfine.env_id"])
        if os.environ["POINT"] == "planning":
            time.sleep(5)

    from rayfine_core.plugins import register
    register(types.SimpleNamespace(rayfine_start=rayfine_start), name="points")
    rf.load_env(IMAGE, runtime=RUNTIME, start_timeout=60)
    report(started=True)
    """
    proc = client(body, (runtime, image), POINT=point)
    env_id = read(proc)["starting"]
    if point == "waiting-ready":
        assert wait_until(lambda: bool(left(env_id, runtime)), 30), "the container never appeared"
    elif point == "planning":
        time.sleep(0.3)
    proc.send_signal(signum)
    proc.wait(60)
    time.sleep(1.0)  # whatever the engine was still doing has landed by now
    assert not left(env_id, runtime), f"{point}: signal {signum} leaked a container"
