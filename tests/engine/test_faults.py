"""Fault injection: containers killed mid-call, clients killed, the engine stopped and started.

Each test checks the error is typed and informative, and that no container
is left behind.  Runs against ``--rayfine-runtime`` (docker by default).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

import rayfine_core as rf
from rayfine_core import errors, labels
from rayfine_core.environment import rundir
from rayfine_core.runtime import reaper

REPO = Path(__file__).resolve().parents[2]
CLIENT = Path(__file__).with_name("fault_client.py")


def containers_of(runtime: str, env_id: str) -> list:
    return rf.get_runtime(runtime).list_containers({labels.ENV_ID: env_id})


def engine_cli(runtime: str) -> str:
    if shutil.which(runtime) is None:
        pytest.skip(f"fault injection drives the {runtime!r} command line, which is not installed")
    return runtime


def start_client(runtime: str, image: str) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen(
        [sys.executable, str(CLIENT), runtime, image], stdout=subprocess.PIPE, text=True
    )
    line = proc.stdout.readline()
    assert line, f"client exited early with {proc.wait()}"
    return proc, json.loads(line)


def wait_gone(runtime: str, env_id: str, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not containers_of(runtime, env_id):
            return True
        time.sleep(0.2)
    return False


# -- the container dies -----------------------------------------------------------------


def test_container_killed_mid_call(rayfine_runtime, rayfine_image):
    cli = engine_cli(rayfine_runtime)
    with rf.load_env(rayfine_image("kitchen-sink"), runtime=rayfine_runtime) as env:
        killer = threading.Timer(
            1.0,
            subprocess.run,
            args=([cli, "kill", env.handle.id],),
            kwargs={"capture_output": True},
        )
        killer.start()
        started = time.monotonic()
        with pytest.raises(errors.ContainerDiedError) as info:
            env.block(60)
        killer.join()
        assert time.monotonic() - started < 30  # an error, not a hang
        assert info.value.exit_code == 137
    assert containers_of(rayfine_runtime, env.id) == []


def test_out_of_memory_is_reported(rayfine_runtime, rayfine_image):
    with rf.load_env(
        rayfine_image("kitchen-sink"), runtime=rayfine_runtime, mem_limit="64m"
    ) as env:
        assert env.allocate(8) == 8  # fits
        with pytest.raises(errors.ContainerDiedError) as info:
            env.allocate(512)
        assert info.value.oom_killed or info.value.exit_code == 137


# -- the client dies --------------------------------------------------------------------


@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name
)
def test_client_signalled_cleans_up_itself(rayfine_runtime, rayfine_image, sig):
    proc, info = start_client(rayfine_runtime, rayfine_image("kitchen-sink"))
    assert containers_of(rayfine_runtime, info["env_id"])
    proc.send_signal(sig)
    proc.wait(timeout=60)
    assert containers_of(rayfine_runtime, info["env_id"]) == []


def test_killed_client_is_reaped_by_the_next_run(rayfine_runtime, rayfine_image):
    image = rayfine_image("kitchen-sink")
    proc, info = start_client(rayfine_runtime, image)
    proc.kill()  # SIGKILL: no cleanup code runs
    proc.wait(timeout=30)
    (orphan,) = containers_of(rayfine_runtime, info["env_id"])
    assert orphan.labels[labels.PID] == str(proc.pid)
    socket_dir = reaper_socket_dir(info["env_id"])
    # The next Rayfine process on this host removes it before starting its own.
    code = f"import rayfine_core as rf\nwith rf.load_env({image!r}, runtime={rayfine_runtime!r}) as e: e.add(1)"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert containers_of(rayfine_runtime, info["env_id"]) == []
    assert not socket_dir.exists()


def reaper_socket_dir(env_id: str) -> Path:
    path = rundir.path_of(env_id)
    assert path is not None
    return path


def test_reaper_spares_live_owners_and_detached_containers(rayfine_runtime, rayfine_image):
    image = rayfine_image("kitchen-sink")
    with (
        rf.load_env(image, runtime=rayfine_runtime) as mine,
        rf.load_env(image, runtime=rayfine_runtime, labels={labels.DETACHED: "1"}) as detached,
    ):
        proc, info = start_client(rayfine_runtime, image)
        try:
            orphan_ids = {r.id for r in reaper.orphans(rf.get_runtime(rayfine_runtime))}
            assert mine.handle.id not in orphan_ids  # owner (this process) alive
            live = containers_of(rayfine_runtime, info["env_id"])[0]
            assert live.id not in orphan_ids  # owner (the client) alive
            proc.kill()
            proc.wait(timeout=30)
            orphan_ids = {r.id for r in reaper.orphans(rf.get_runtime(rayfine_runtime))}
            assert live.id in orphan_ids
            assert detached.handle.id not in orphan_ids
            reaper.reap(rf.get_runtime(rayfine_runtime))
            assert containers_of(rayfine_runtime, info["env_id"]) == []
            assert mine.add(1) == 3 and detached.add(1) == 3
        finally:
            proc.kill()


# -- the engine stops and starts --------------------------------------------------------


def engine_up(runtime: str) -> bool:
    try:
        rf.get_runtime(runtime).close()
        rf.get_runtime(runtime).version()
        return True
    except errors.RayfineError:
        return False


SHARED_PODMAN = "unix:///run/podman/podman.sock"
"""The podman service scripts/install-engines.sh starts (the one this test restarts)."""


def engine_pattern(runtime: str) -> str:
    return "dockerd" if runtime == "docker" else f"podman system service --time=0 {SHARED_PODMAN}"


def stop_engine(runtime: str) -> None:
    pattern = engine_pattern(runtime)
    subprocess.run(["pkill", "-TERM", "-f", pattern], check=False)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if subprocess.run(["pgrep", "-f", pattern], capture_output=True).returncode != 0:
            return  # the process is gone, not just its API
        time.sleep(0.5)


def start_engine(runtime: str) -> None:
    flag = "--docker-only" if runtime == "docker" else "--podman-only"
    # From a directory deleted right after, with its output in pipes: the
    # engine must neither live in the caller's directory nor hold its pipes
    # (subprocess.run waits for the pipes to close).
    with tempfile.TemporaryDirectory() as cwd:
        script = str(REPO / "scripts" / "install-engines.sh")
        subprocess.run(
            ["bash", script, flag], check=True, timeout=300, cwd=cwd, capture_output=True
        )
    deadline = time.monotonic() + 60
    while not engine_up(runtime) and time.monotonic() < deadline:
        time.sleep(0.5)


def test_engine_stopped_and_started(rayfine_runtime, rayfine_image, monkeypatch):
    if (
        rayfine_runtime not in ("docker", "podman")
        or os.environ.get("RAYFINE_SKIP_ENGINE_RESTART") == "1"
    ):
        pytest.skip("restarting the engine is implemented for the docker and podman set-up scripts")
    if rayfine_runtime == "podman":  # pin the shared service: no fallback to a private one
        monkeypatch.setenv("RAYFINE_PODMAN_URL", SHARED_PODMAN)
        rf.get_runtime("podman").close()
    image = rayfine_image("kitchen-sink")
    env = rf.load_env(image, runtime=rayfine_runtime)
    try:
        stop_engine(rayfine_runtime)
        assert not engine_up(rayfine_runtime)
        # With the engine gone, a call either still works (podman: containers
        # outlive the API service) or fails with a typed Rayfine error, never a hang.
        try:
            assert env.add(1, timeout=10) == 3
        except errors.RayfineError:
            pass
        with pytest.raises(errors.EngineUnavailableError, match="Start it|start"):
            rf.load_env(image, runtime=rayfine_runtime)
    finally:
        start_engine(rayfine_runtime)
    assert engine_up(rayfine_runtime)
    pids = subprocess.run(
        ["pgrep", "-f", engine_pattern(rayfine_runtime)], capture_output=True, text=True
    ).stdout.split()
    assert pids and all(os.readlink(f"/proc/{pid}/cwd") == "/" for pid in pids)
    env.cleanup()
    assert containers_of(rayfine_runtime, env.id) == []
    with rf.load_env(image, runtime=rayfine_runtime) as fresh:
        assert fresh.add(2) == 4


# -- the engine hiccups -------------------------------------------------------------------


def test_engine_hiccup_during_start_is_retried_once(rayfine_runtime, rayfine_image, monkeypatch):
    """The engine fails the first start as if the daemon blinked: the start is retried once."""
    runtime = rf.get_runtime(rayfine_runtime)
    real_start = runtime.start
    attempts: list[str] = []

    def flaky_start(request):
        attempts.append(request.name)
        if len(attempts) == 1:
            raise errors.EngineUnavailableError("connection reset by the engine (injected)")
        return real_start(request)

    monkeypatch.setattr(runtime, "start", flaky_start)
    with rf.load_env(rayfine_image("kitchen-sink"), runtime=rayfine_runtime) as env:
        assert env.add(1) == 3
    assert len(attempts) == 2
    assert containers_of(rayfine_runtime, env.id) == []
