"""The ``rayfine`` command as an env author uses it, offline on the ``process`` runtime."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import rayfine_core as rf
from rayfine_core import errors
from rayfine_core.cli import _util, containers, info, main

ENV = """
from typing import Optional


class Actor:
    def step(self, action: str) -> dict:
        return {"action": action}

    def add(self, n: int, tags: list[str] = []) -> dict:
        return {"n": n, "tags": tags}

    def maybe(self, text: Optional[str] = None) -> dict:
        return {"text": text}

    def version(self) -> int:
        return 1
"""


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("cli-env")
    (root / "env.py").write_text(ENV)
    rf.build_image_from_env(root, "unit-authoring-cli:latest", runtime="process", quiet=True)
    return "unit-authoring-cli:latest"


@pytest.fixture
def running(image, capsys):
    name = f"unit-authoring-cli-{os.getpid()}-{time.monotonic_ns() % 10**6}"
    assert main(["run", image, "--name", name, "--runtime", "process"]) == 0
    capsys.readouterr()
    yield name
    main(["stop", name, "--runtime", "process"])


def call(capsys, *argv: str) -> object:
    assert main(["call", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


# -- --arg read by the parameter's annotation ------------------------------------------------


def test_arg_values_follow_the_annotation(running, capsys):
    assert call(capsys, running, "step", "--arg", "action=12") == {"action": "12"}
    assert call(capsys, running, "step", "--arg", "action=true") == {"action": "true"}
    assert call(capsys, running, "step", "--arg", 'action="quoted"') == {"action": "quoted"}
    assert call(capsys, running, "add", "--arg", "n=12", "--arg", 'tags=["a"]') == {
        "n": 12,
        "tags": ["a"],
    }
    assert call(capsys, running, "maybe", "--arg", "text=null") == {"text": None}
    assert call(capsys, running, "maybe", "--arg", "text=7") == {"text": "7"}


def test_a_value_that_fits_nowhere_is_refused_with_the_signature(running, capsys):
    assert main(["call", running, "add", "--arg", "n=twelve"]) == 2
    err = capsys.readouterr().err
    assert "argument 'n' must be int, got str 'twelve'" in err and "expected add(n: int" in err


def test_typed_value_rules():
    assert _util.typed_value("12", "str") == "12"
    assert _util.typed_value("12", "int") == 12
    assert _util.typed_value("12", None) == 12  # unannotated: JSON as before
    assert _util.typed_value("Paris", None) == "Paris"
    assert _util.typed_value("[1, 2]", "list[int]") == [1, 2]
    assert _util.typed_value("[1, 2]", "str") == "[1, 2]"
    assert _util.typed_value("null", "Optional[str]") is None
    assert _util.typed_value("3", "Literal['3', '4']") == "3"


# -- which runtime, which containers ------------------------------------------------------------


class Answering:
    def __init__(self, ok: bool) -> None:
        self.ok = ok

    def version(self) -> str:
        if not self.ok:
            raise errors.EngineUnavailableError("not running")
        return "1"


@pytest.fixture
def runtimes(monkeypatch):
    """Pretend these runtimes are installed, answering or not."""

    def install(**answering: bool) -> None:
        monkeypatch.delenv("RAYFINE_RUNTIME", raising=False)
        monkeypatch.setattr(_util, "available_runtimes", lambda: sorted(answering))
        monkeypatch.setattr(_util, "get_runtime", lambda name: Answering(answering[name]))
        _util._first_answering.cache_clear()

    yield install
    _util._first_answering.cache_clear()


def test_the_default_runtime_is_the_first_installed_one_that_answers(runtimes, monkeypatch):
    runtimes(docker=False, podman=True, process=True)
    assert _util.default_runtime() == "podman"
    runtimes(docker=True, podman=True)
    assert _util.default_runtime() == "docker"
    runtimes(docker=False, kube=True, process=True)
    assert _util.default_runtime() == "kube"
    monkeypatch.setenv("RAYFINE_RUNTIME", "process")
    assert _util.default_runtime() == "process"


def test_no_answering_runtime_says_why_and_never_picks_the_test_double(runtimes):
    runtimes(docker=False, podman=False, process=True)
    with pytest.raises(errors.EngineUnavailableError) as caught:
        _util.default_runtime()
    text = str(caught.value)
    assert "docker: not running" in text and "podman: not running" in text
    assert "process" not in text and "rayfine doctor" in text


def test_ps_lists_every_runtime_that_answers(running, monkeypatch, capsys):
    monkeypatch.setattr(containers, "available_runtimes", lambda: ["no-such-runtime", "process"])
    assert main(["ps", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert any(row["name"] == running and row["runtime"] == "process" for row in rows)
    assert main(["-v", "ps"]) == 0
    captured = capsys.readouterr()
    assert running in captured.out and "not listed: no-such-runtime" in captured.err
    monkeypatch.setattr(containers, "available_runtimes", lambda: ["no-such-runtime"])
    assert main(["ps"]) == 1
    assert "not listed: no-such-runtime" in capsys.readouterr().err


# -- doctor ----------------------------------------------------------------------------------------


def test_doctor_fix_lines_name_no_missing_script(monkeypatch):
    monkeypatch.setattr(info, "repo_script", lambda name: None)  # as from an installed wheel
    fix = info.base_image_fix("docker", "python:3.11-slim")
    assert "scripts/" not in fix and "`docker pull python:3.11-slim`" in fix
    assert "RAYFINE_BASE_IMAGE" in fix
    monkeypatch.undo()
    script = info.repo_script("make-base-image.sh")
    fix = info.base_image_fix("docker", "x")
    if script is not None:  # a checkout: the path named exists
        assert str(script) in fix and script.is_file()


# -- init: scaffolds with an episode and offline dependencies ---------------------------------------


def test_init_episode_scaffold_plays_a_scored_episode(tmp_path, capsys):
    assert main(["init", "quiz", "--type", "episode", "--dir", str(tmp_path)]) == 0
    root = tmp_path / "quiz"
    assert sorted(os.listdir(root)) == ["README.md", "env.py"]
    text = (root / "env.py").read_text()
    assert "def reset(self, seed: int = 0)" in text and "def step(self, action: str)" in text
    assert "def score(self)" in text
    rf.build_image_from_env(root, "unit-authoring-quiz:latest", runtime="process", quiet=True)
    with rf.load_env("unit-authoring-quiz:latest", runtime="process", eager=True) as env:
        env.reset(seed=3)
        low, high, turn = 1, 100, {"done": False}
        while not turn["done"]:
            guess = (low + high) // 2
            turn = env.step(action=f"my guess is {guess}")
            if turn["observation"] == "Higher.":
                low = guess + 1
            elif turn["observation"] == "Lower.":
                high = guess - 1
        score = env.score()
    assert score["solved"] and 0 < score["score"] <= 1


def test_init_wheels_works_for_function_environments(tmp_path, capsys):
    assert main(["init", "fn", "--wheels", "--dir", str(tmp_path)]) == 0
    root = tmp_path / "fn"
    assert (root / "wheels" / ".gitignore").read_text().strip().endswith("*.whl")
    assert "rayfine wheels" in (root / "requirements.txt").read_text()
    assert "rayfine wheels fn" in (root / "README.md").read_text()
    assert main(["init", "bad", "--requires", "not a package", "--dir", str(tmp_path)]) == 2
    assert not (tmp_path / "bad").exists()


def test_init_http_wheels_next_to_the_gitignore(tmp_path, capsys):
    from rayfine_core.build.wheelhouse import wheels_dir

    if not (wheels_dir() / ".complete").exists():
        pytest.skip("no filled wheel cache to copy from")
    assert main(["init", "web", "--type", "http", "--wheels", "--dir", str(tmp_path)]) == 0
    names = os.listdir(tmp_path / "web" / "wheels")
    assert ".gitignore" in names and any(n.startswith("fastapi-") for n in names)


# -- rayfine dev, as a command ----------------------------------------------------------------------


def test_rayfine_dev_serves_edits_and_stops_on_sigterm(tmp_path):
    root = tmp_path / "devcli"
    root.mkdir()
    (root / "env.py").write_text("class Actor:\n    def version(self) -> int:\n        return 1\n")
    env = {**os.environ, "RAYFINE_RUNTIME": "process"}
    command = [
        sys.executable,
        "-c",
        "import sys; from rayfine_core.cli import main; sys.exit(main())",
    ]
    dev = subprocess.Popen(
        [*command, "dev", str(root), "--poll", "0.05"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    live = {}
    try:
        version = lambda: rf.attach("devcli").version()  # noqa: E731
        live[1] = wait_for(lambda: _answers(version) == 1)
        (root / "env.py").write_text(
            "class Actor:\n    def version(self) -> int:\n        return 2\n"
        )
        live[2] = wait_for(lambda: _answers(version) == 2)
    finally:
        dev.send_signal(signal.SIGTERM)
        _, err = dev.communicate(timeout=30)
    assert live == {1: True, 2: True}, err
    assert dev.returncode == 0, err
    assert "edits are live" in err and "env.py changed" in err and "stopped devcli" in err
    with pytest.raises(errors.UnknownEnvironmentError):
        rf.attach("devcli")


def _answers(fn):  # type: ignore[no-untyped-def]
    try:
        return fn()
    except errors.RayfineError:
        return None


def wait_for(condition, timeout: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_dev_refuses_a_directory_without_env_py(tmp_path, capsys):
    assert main(["dev", str(tmp_path), "--runtime", "process"]) == 2
    assert "No env.py" in capsys.readouterr().err
