"""The env author's loop on real engines (docker and podman): cached rebuilds, offline
dependencies, pip's failures explained, dev mode, an http app's routes, and mathquiz.

Speed is measured in ``bench/authoring_edit_loop.py``; here the structure is
checked: after an env.py edit the engine reuses the dependency and server
layers.  Images are tagged ``authors-test-*``; containers are removed.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Callable

import pytest

import rayfine_core as rf
from rayfine_core import errors, labels
from rayfine_core.build.builder import base_image
from rayfine_core.build.env_wheels import download_wheels
from rayfine_core.build.wheelhouse import wheels_dir
from rayfine_core.cli.dev import DevSession

REPO = Path(__file__).resolve().parents[2]
RUNTIMES = ("docker", "podman")
ENV = """
import mpmath

VERSION = {version}


class Actor:
    def version(self) -> int:
        return VERSION

    def pi(self, digits: int = 10) -> str:
        mpmath.mp.dps = digits
        return str(mpmath.pi)

    def write(self, path: str) -> str:
        with open(path, "w") as f:
            f.write("x")
        return path
"""


@pytest.fixture(params=RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> str:
    name = request.param
    try:
        rf.get_runtime(name).version()
    except errors.RayfineError as exc:
        pytest.skip(f"{name} does not answer: {exc}")
    return name


@pytest.fixture(scope="module")
def mpmath_wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mpmath's wheel, downloaded once on this host (the containers cannot reach an index)."""
    seed = tmp_path_factory.mktemp("seed")
    (seed / "requirements.txt").write_text("mpmath==1.3.0\n")
    try:
        return download_wheels(seed, base_image=base_image())[0].parent
    except errors.RayfineError as exc:
        pytest.skip(f"cannot download wheels on this host: {exc}")


def make_env(root: Path, wheels: Path | None, version: int = 1) -> Path:
    root.mkdir(parents=True)
    # A fresh first line: a cached layer from an earlier run must not stand in for this one.
    (root / "env.py").write_text(f"# {time.time_ns()}\n" + ENV.format(version=version))
    (root / "requirements.txt").write_text("mpmath==1.3.0\n")
    if wheels is not None:
        shutil.copytree(wheels, root / "wheels")
    return root


def cached_after(lines: list[str], marker: str) -> bool:
    """True if the build step whose line contains ``marker`` was taken from the cache."""
    at = next(i for i, line in enumerate(lines) if marker in line)
    for line in lines[at + 1 :]:
        if re.match(r"^(Step|STEP) \d+", line):
            return False
        if "Using cache" in line:
            return True
    return False


def test_an_env_py_edit_reuses_the_dependency_and_server_layers(runtime, mpmath_wheels, tmp_path):
    root = make_env(tmp_path / "edit", mpmath_wheels)
    tag = f"authors-test-edit-{runtime}:latest"
    rf.build_image_from_env(root, tag, runtime=runtime, quiet=True)
    (root / "env.py").write_text(
        (root / "env.py").read_text().replace("VERSION = 1", "VERSION = 2")
    )
    lines: list[str] = []
    rf.build_image_from_env(root, tag, runtime=runtime, on_output=lines.append)
    assert cached_after(lines, "pip install"), "\n".join(lines)
    assert cached_after(lines, "compileall"), "\n".join(lines)
    assert not cached_after(lines, "COPY env /app")
    with rf.load_env(tag, runtime=runtime) as env:
        assert env.version() == 2
        assert env.pi(5) == "3.1416"  # installed offline, from wheels/


def test_requirements_without_wheels_or_index_fail_with_the_fix(runtime, tmp_path):
    root = make_env(tmp_path / "noindex", None)
    with pytest.raises(errors.ImageBuildError) as caught:
        rf.build_image_from_env(
            root, f"authors-test-noindex-{runtime}:latest", runtime=runtime, quiet=True
        )
    first = str(caught.value).splitlines()[0]
    assert "could not reach a package index" in first or "no mpmath" in first
    assert f"rayfine wheels {root}" in first or "requirements.txt" in first


def test_dev_mode_mounts_the_directory_read_only_and_makes_edits_live(
    runtime, mpmath_wheels, tmp_path
):
    root = make_env(tmp_path / "devmode", mpmath_wheels)
    name = f"authors-test-dev-{runtime}-{time.monotonic_ns() % 10**8}"
    session = DevSession(root, runtime, name, {}, False, None)
    session.start()
    try:
        engine = rf.get_runtime(runtime)
        image_id = engine.image_id(session.image)
        env = rf.attach(name)
        assert env.version() == 1 and env.pi(3) == "3.14"
        with pytest.raises(errors.RemoteException) as caught:
            env.write("/app/created-by-the-container")
        assert "Read-only file system" in str(caught.value) or "Permission denied" in str(
            caught.value
        )
        assert not (root / "created-by-the-container").exists()
        (root / "env.py").write_text(
            (root / "env.py").read_text().replace("VERSION = 1", "VERSION = 2")
        )
        session.apply([root / "env.py"])
        assert rf.attach(name).version() == 2
        assert engine.image_id(session.image) == image_id  # no build for a code edit
        assert engine.image_labels(session.image)[labels.ENV_TYPE] == "function_based"
    finally:
        session.stop()
    with pytest.raises(errors.UnknownEnvironmentError):
        rf.attach(name)


def test_http_routes_of_every_verb_in_a_container(tmp_path, capsys):
    from rayfine_core.cli import main

    if not (wheels_dir() / ".complete").exists():
        pytest.skip("Rayfine's wheel cache is empty (the first function-based build fills it)")
    assert main(["init", "web", "--type", "http", "--wheels", "--dir", str(tmp_path)]) == 0
    root = tmp_path / "web"
    (root / "env.py").write_text(
        (root / "env.py").read_text() + '\n\n@app.get("/items/{item_id}")\n'
        "def item(item_id: int, q: Optional[str] = None) -> dict:\n"
        '    return {"item_id": item_id, "q": q}\n'
    )
    tag = "authors-test-http:latest"
    rf.build_image_from_env(root, tag, runtime="docker", quiet=True)
    with rf.load_env(tag, runtime="docker") as env:
        assert env.health() == {"status": "ok"}  # a GET route
        assert env.items_by_item_id(item_id=4, q="a") == {"item_id": 4, "q": "a"}
        methods = {m.name: m for m in env.list_methods()}
        assert methods["evaluate"].signature == "(*, answer: str, expected: str | None = None)"
        with pytest.raises(errors.InvalidArgumentsError, match="did you mean 'answer'"):
            env.evaluate(answr="Paris")
        with pytest.raises(errors.MethodNotFoundError, match="did you mean 'evaluate'"):
            env.evalute(answer="Paris")


@pytest.fixture
def mathquiz(tmp_path: Path) -> Path:
    root = tmp_path / "mathquiz"
    shutil.copytree(
        REPO / "environments" / "mathquiz", root, ignore=shutil.ignore_patterns("*.whl")
    )
    try:
        download_wheels(root, base_image=base_image())
    except errors.RayfineError as exc:
        pytest.skip(f"cannot download wheels on this host: {exc}")
    return root


def play(env: rf.Environment, seed: int, answer: Callable[[int], str]) -> tuple[list[str], dict]:
    """One episode: ``answer(i)`` for problem i; returns what wrong answers revealed, and the score."""
    turn = env.reset(seed=seed, problems=4)
    revealed: list[str] = []
    while not turn["done"]:
        turn = env.step(answer=answer(len(revealed)))
        moved_on = turn["done"] or "Next:" in turn["observation"]
        if moved_on:
            found = re.search(r"one answer is (.+?)\.(?: Next|$)", turn["observation"])
            revealed.append(found.group(1) if found else "")
    return revealed, env.score()


def test_mathquiz_scores_a_multi_turn_episode_offline(mathquiz):
    rf.build_image_from_env(mathquiz, "authors-test-mathquiz:latest", runtime="docker", quiet=True)
    with rf.load_env("authors-test-mathquiz:latest", runtime="docker", eager=True) as env:
        revealed, score = play(env, 7, lambda i: "no idea")
        assert score == {"solved": 0, "answered": 4, "problems": 4, "score": 0.0}
        assert all(revealed)

        # The same seed gives the same problems; equal answers in another form still count.
        def restated(i: int) -> str:  # products stay products: factor answers must be
            return revealed[i] if revealed[i].startswith("(") else f"({revealed[i]}) + 0"

        _, score = play(env, 7, restated)
        assert score == {"solved": 4, "answered": 4, "problems": 4, "score": 1.0}
        env.reset(seed=1, problems=1)
        hostile = env.step(answer="__import__('os').system('id')")
        assert "plain expression" in hostile["observation"] and not hostile["done"]
        assert "mathquiz: episode seed=1" in env.logs()
