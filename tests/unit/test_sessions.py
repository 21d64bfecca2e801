"""Sessions offline, on the ``process`` runtime: restarts, and the CLI.  (The conformance
suite covers what every runtime must do with sessions.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import rayfine_core as rf
from rayfine_core import errors


@pytest.fixture
def episodes(process_image) -> str:
    return process_image("episodes")


def test_a_session_ends_with_its_container(episodes, process_image):
    with rf.load_env(episodes, runtime="process", restart=True) as env:
        session = env.session(seed=7)
        assert session.step(1)["seed"] == 7
        pid = rf.get_runtime("process").pid(env.handle.id)
        os.kill(pid, 9)
        with pytest.raises(errors.ContainerDiedError):
            session.step(2)
        with pytest.raises(errors.SessionClosedError, match="replaced"):
            session.step(3)
        assert env.session(seed=8).step(1)["seed"] == 8  # the new container takes new ones
        session.close()  # the old one is gone with its container: closing is a no-op


def test_sessions_need_an_actor(process_image):
    source = "def add(a: int, b: int) -> int:\n    return a + b\n"
    import pathlib
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        pathlib.Path(tmp, "env.py").write_text(source)
        rf.build_image_from_env(tmp, "unit-functions:latest", quiet=True, runtime="process")
    with rf.load_env("unit-functions:latest", runtime="process") as env:
        with pytest.raises(errors.RayfineError):
            env.session()
        assert env.add(1, 2) == 3


def rayfine(*args: str) -> subprocess.CompletedProcess[str]:
    cli = os.path.join(os.path.dirname(sys.executable), "rayfine")
    return subprocess.run([cli, *args], capture_output=True, text=True, timeout=120)


def test_sessions_from_the_command_line(episodes):
    name = "unit-cli-sessions"
    assert rayfine("run", episodes, "--runtime", "process", "--name", name).returncode == 0
    try:
        opened = rayfine("sessions", name, "--open", "--arg", "seed=3")
        assert opened.returncode == 0, opened.stderr
        session = opened.stdout.strip()
        step = rayfine("call", name, "step", "--session", session, "--arg", "action=1", "--json")
        assert json.loads(step.stdout) == {"seed": 3, "steps": 1, "action": 1}, step.stderr
        listed = json.loads(rayfine("sessions", name, "--json").stdout)
        assert [s["id"] for s in listed] == [session] and listed[0]["calls"] == 1
        assert rayfine("sessions", name, "--close", session).returncode == 0
        gone = rayfine("call", name, "step", "--session", session, "--arg", "action=1")
        assert gone.returncode == 1 and "session" in gone.stderr.lower()
    finally:
        rayfine("stop", name)
