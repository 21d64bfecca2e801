"""The restart race: two threads call an environment whose container is killed mid-call.

20 runs on each runtime: every death gives exactly one restart (counted by the
``rayfine_stop`` hook, reason "restart"), the callers see a result or a typed
:class:`ContainerDiedError`, never a raw exception, and the environment answers
again at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import types

import pytest

import rayfine_core as rf
from rayfine_core import errors
from rayfine_core.plugins import register, unregister

RUNS = 20
RUNTIMES = [
    pytest.param("process", id="process"),
    pytest.param("docker", id="docker", marks=pytest.mark.engine),
    pytest.param("podman", id="podman", marks=pytest.mark.engine),
]


def kill(runtime: str, env: rf.Environment) -> None:
    """Kill the container from outside, as the OOM killer or an operator would."""
    if runtime == "process":
        pid = rf.get_runtime("process").pid(env.handle.id)  # type: ignore[attr-defined]
        os.kill(pid, signal.SIGKILL)
    else:
        subprocess.run([runtime, "kill", env.handle.id], capture_output=True, check=True)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_one_restart_per_death_and_only_typed_errors(runtime, sample_image):
    restarts: list[str] = []

    @rf.hookimpl
    def rayfine_stop(handle, reason):
        if reason == "restart":
            restarts.append(handle.id)

    plugin = register(types.SimpleNamespace(rayfine_stop=rayfine_stop), name="restart-counter")
    image = sample_image("kitchen-sink", runtime)
    try:
        with rf.load_env(image, runtime=runtime, restart=True) as env:
            for run in range(RUNS):
                before = len(restarts)
                outcomes: list[object] = []
                barrier = threading.Barrier(3)

                def call() -> None:
                    barrier.wait()
                    try:
                        outcomes.append(env.sleep(3))
                    except Exception as exc:  # what a caller sees: must be typed
                        outcomes.append(exc)

                threads = [threading.Thread(target=call) for _ in range(2)]
                for thread in threads:
                    thread.start()
                barrier.wait()
                time.sleep(0.3)
                kill(runtime, env)
                for thread in threads:
                    thread.join(60)
                assert len(restarts) - before == 1, f"run {run}: {len(restarts) - before} restarts"
                assert all(isinstance(o, errors.ContainerDiedError) or o == 3 for o in outcomes), (
                    outcomes
                )
                assert env.add(run) == run + 2
    finally:
        unregister(plugin)
