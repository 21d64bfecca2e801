"""Every way a process holding pools ends, offline: nothing its pools started may be left.

Each test runs a client in a subprocess on the ``process`` runtime (and a
slow variant whose "engine" is another process that creates the container
whatever happens to the client), ends it one way, and looks in the store
for containers with the pool's label.
"""

from __future__ import annotations

import signal
import subprocess
import time

import exit_clients
import pytest
from exit_clients import read, wait_until

from rayfine_core.pool import POOL_LABEL
from rayfine_core.runtime import reaper
from rayfine_core.testing.process_runtime import ProcessRuntime


@pytest.fixture(autouse=True)
def _private_run_root(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path_factory.mktemp("run")))


def client(body: str, image: str, **env: str) -> subprocess.Popen[str]:
    return exit_clients.client(f"\nIMAGE = {image!r}\n", body, **{"SLOW_START": "1.0", **env})


def left(pool: str) -> list:
    return ProcessRuntime().list_containers({POOL_LABEL: pool})


@pytest.mark.parametrize("how", ["exit", "exception", "SIGTERM", "SIGHUP", "SIGINT"])
def test_a_pool_with_environments_in_use_leaves_nothing(kitchen, how):
    body = """
    pool = rf.load_pool(IMAGE, 2, runtime="process", name="exit-" + os.environ["HOW"].lower())
    env = pool.acquire()
    replicas = rf.load_replicas(IMAGE, 2, runtime="process", name="exit-r-" + os.environ["HOW"].lower())
    report(in_use=pool.status().in_use, replicas=len(replicas))
    sys.stdin.readline() if not os.environ["HOW"].startswith("SIG") else None  # counted first
    if os.environ["HOW"] == "exit":
        sys.exit(0)
    if os.environ["HOW"] == "exception":
        raise RuntimeError("the trainer crashed")
    time.sleep(60)
    """
    proc = client(body, kitchen, HOW=how)
    name = f"exit-{how.lower()}"
    assert read(proc) == {"in_use": 1, "replicas": 2}
    assert len(left(name)) >= 2 and len(left(f"exit-r-{how.lower()}")) == 2
    if how.startswith("SIG"):
        proc.send_signal(getattr(signal, how))
    else:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    proc.wait(60)
    for each in (name, f"exit-r-{how.lower()}"):
        assert wait_until(lambda each=each: not left(each)), f"{how} left {left(each)}"


def test_sigterm_while_a_pool_fills_and_refills(kitchen):
    body = """
    pool = rf.load_pool(IMAGE, 3, runtime="slow", name="exit-filling", wait=False)
    report(made=True)
    while True:  # episodes as fast as the pool gives them out: refills all the time
        with pool.env(timeout=60) as env:
            env.add(1)
    """
    proc = client(body, kitchen)
    assert read(proc) == {"made": True}
    time.sleep(3.0)  # starts in flight in the "engine", acquires, releases, refills
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    time.sleep(1.5)  # what the engine was still creating exists by now
    assert wait_until(lambda: not left("exit-filling")), left("exit-filling")


def test_sigterm_during_an_async_fill_leaves_nothing(kitchen):
    body = """
    async def main():
        async with rf.aload_pool(IMAGE, 4, runtime="slow", name="exit-async") as pool:
            await asyncio.sleep(60)
    asyncio.run(main())
    """
    proc = client(body, kitchen)
    time.sleep(2.0)
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    time.sleep(1.5)
    assert wait_until(lambda: not left("exit-async")), left("exit-async")


def test_sigkill_leaves_orphans_the_next_process_reaps(kitchen):
    body = """
    pool = rf.load_pool(IMAGE, 2, runtime="process", name="exit-killed")
    report(ready=pool.status().ready)
    time.sleep(60)
    """
    proc = client(body, kitchen)
    assert read(proc) == {"ready": 2}
    proc.kill()
    proc.wait()
    assert len(left("exit-killed")) == 2, "nothing can clean up after SIGKILL"
    reaper.reap(ProcessRuntime())
    assert not left("exit-killed")


def test_a_forked_child_can_neither_use_nor_close_its_parents_pool(kitchen):
    body = """
    from rayfine_core import errors
    pool = rf.load_pool(IMAGE, 1, runtime="process", name="exit-fork")
    pid = os.fork()
    if pid == 0:
        outcome = []
        for action in (pool.acquire, pool.close):
            try:
                action()
            except errors.ValidationError as exc:
                outcome.append("refused")
        report(child=outcome)
        sys.exit(0)  # exit hooks run here: the parent's pool must survive them
    os.waitpid(pid, 0)
    with pool.env(timeout=30) as env:
        report(parent=env.add(1), ready=pool.status().ready)
    pool.close()
    """
    proc = client(body, kitchen)
    assert read(proc) == {"child": ["refused", "refused"]}
    assert read(proc)["parent"] == 3
    assert proc.wait(60) == 0
    assert not left("exit-fork")
