"""The ``rayfine`` console script, run as installed, against the real Docker engine.

Every command runs in a subprocess with its own ``XDG_STATE_HOME``, so the
state files of detached environments never mix with the user's.  The
function scaffold is built once per module; every container a test starts
is removed in a ``finally``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from rayfine_core import labels
from rayfine_core.build.detect import inspect_env_dir
from rayfine_core.runtime.types import EnvType

pytestmark = pytest.mark.engine

RAYFINE = Path(sys.executable).with_name("rayfine")
BASE_IMAGE = os.environ.get("RAYFINE_BASE_IMAGE", "rayfine/python:3.11-bookworm")
IMAGE = "rayfine-cli-test:latest"
COMMANDS = ["init", "build", "run", "ps", "logs", "stop", "call", "methods", "plugins", "doctor"]


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if shutil.which("docker") is None:
        pytest.skip("needs the docker CLI and daemon")
    state = tmp_path_factory.mktemp("state")
    return {
        **os.environ,
        "RAYFINE_BASE_IMAGE": BASE_IMAGE,
        "XDG_STATE_HOME": str(state),
        "RAYFINE_RUNTIME": "docker",
    }


@pytest.fixture(scope="module")
def rayfine(cli_env):
    def run(
        *args: str, check: bool = True, timeout: float = 300, cwd: Path | None = None
    ) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [str(RAYFINE), *args],
            capture_output=True,
            text=True,
            env=cli_env,
            timeout=timeout,
            cwd=cwd,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"rayfine {' '.join(args)} -> {result.returncode}\n{result.stdout}\n{result.stderr}"
            )
        return result

    return run


def assert_clean_error(result: subprocess.CompletedProcess, code: int, *fragments: str) -> None:
    """Exit ``code``, a one-line ``rayfine: error:`` / argparse message, never a Python traceback."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback (most recent call last)" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def unique(prefix: str) -> str:
    return f"rayfine-cli-{prefix}-{secrets.token_hex(3)}"


def docker_rm(name: str) -> None:
    subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def remove(rayfine, name: str) -> None:
    """Whatever a failed test left: the container, its state file and socket directory."""
    rayfine("stop", name, check=False)
    docker_rm(name)


@pytest.fixture(scope="module")
def image(rayfine, tmp_path_factory) -> str:
    parent = tmp_path_factory.mktemp("envs")
    rayfine("init", "demo", "--dir", str(parent))
    built = rayfine("build", str(parent / "demo"), "-t", IMAGE)
    assert built.stdout.strip().splitlines()[-1] and "building" in built.stderr
    return IMAGE


@pytest.fixture()
def running(rayfine, image, tmp_path):
    """A detached environment started by `rayfine run` (with an --env-file)."""
    name = unique("env")
    env_file = tmp_path / "vars.env"
    env_file.write_text("# settings\nEXPECTED=Rome\n\n")
    try:
        result = rayfine(
            "run", image, "--name", name, "--env-file", str(env_file), "--pids-limit", "256"
        )
        assert f"name:      {name}" in result.stdout
        yield name
    finally:
        remove(rayfine, name)


# -- help, version, usage errors ------------------------------------------------------


def test_version_and_help_document_exit_codes(rayfine):
    assert rayfine("--version").stdout.startswith("rayfine ")
    top = rayfine("--help").stdout
    assert "exit codes:" in top and "0  success" in top and "2  usage error" in top
    for command in COMMANDS:
        assert command in top


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(rayfine, command):
    result = rayfine(command, "--help")
    assert result.stdout.startswith(f"usage: rayfine {command}")


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["frobnicate"], "invalid choice"),
        ([], "usage: rayfine"),
        (["build", "/nonexistent/env", "-t", "x:latest"], "rayfine: error: Environment directory"),
        (["build", ".", "-t", "x", "--build-arg", "=v"], "--build-arg"),
        (["call", "no-such-env", "m"], "rayfine: error: No detached environment 'no-such-env'"),
        (["call", "x", "m", "--arg", "novalue"], "argument --arg"),
        (["call", "x", "m", "--args-json", "[1]"], "JSON object"),
        (["methods", "no-such-env"], "rayfine: error: No detached environment"),
        (["logs", "no-such-env-xyz"], "rayfine: error: No Rayfine container"),
        (["stop", "no-such-env-xyz"], "rayfine: error: No Rayfine container"),
        (["stop"], "rayfine: error: Name the environments"),
        (["stop", "x", "--all"], "rayfine: error: Name the environments"),
        (["run", "x:latest", "--env", "1BAD=v"], "argument --env"),
        (["init", "bad/name"], "rayfine: error: Invalid name"),
    ],
)
def test_bad_input_exits_2(rayfine, args, fragment):
    assert_clean_error(rayfine(*args, check=False), 2, fragment)


def test_run_of_a_missing_image_is_an_operation_failure(rayfine):
    assert_clean_error(
        rayfine("run", "rayfine-cli-no-such-image:latest", check=False), 1, "rayfine: error: Image"
    )


def test_init_refuses_an_existing_directory(rayfine, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    assert_clean_error(
        rayfine("init", "taken", "--dir", str(tmp_path), check=False), 2, "already exists"
    )
    assert os.listdir(tmp_path / "taken") == ["keep.txt"]


# -- the detached lifecycle -------------------------------------------------------------


def test_run_ps_methods_call_logs_stop(rayfine, running, cli_env):
    name = running
    state_file = Path(cli_env["XDG_STATE_HOME"]) / "rayfine" / "envs" / f"{name}.json"
    assert state_file.stat().st_mode & 0o777 == 0o600
    assert state_file.parent.stat().st_mode & 0o777 == 0o700

    rows = json.loads(rayfine("ps", "--json").stdout)
    row = next(r for r in rows if r["name"] == name)
    assert row["detached"] and row["status"] == "running" and row["env_type"] == "function_based"
    assert name in rayfine("ps").stdout

    text = rayfine("methods", name).stdout
    assert "evaluate(answer: str" in text and "Score ``answer``" in text and "[async]" in text
    assert {m["name"] for m in json.loads(rayfine("methods", name, "--json").stdout)} == {
        "evaluate",
        "hello",
    }

    # The CLI that started it has exited: each call is a new process reattaching.
    pretty = rayfine("call", name, "evaluate", "--arg", "answer=rome").stdout
    assert json.loads(pretty) == {"answer": "rome", "expected": "Rome", "score": 1.0, "calls": 1}
    assert pretty.count("\n") > 1
    compact = rayfine(
        "call",
        name,
        "evaluate",
        "--args-json",
        '{"answer": "x", "expected": "y"}',
        "--arg",
        'answer="5"',
        "--json",
    ).stdout
    assert compact.strip() == '{"answer":"5","expected":"y","score":0.0,"calls":2}'
    by_id = row["id"][:12]  # a container-id prefix works as well as the name
    assert rayfine("call", by_id, "hello", "--arg", 'name="7"').stdout == "hello, 7!\n"

    remote = rayfine("call", name, "evaluate", "--arg", 'answer=""', check=False)
    assert_clean_error(remote, 1, "rayfine: error: ValueError in evaluate(): answer is empty")
    assert len(remote.stderr.strip().splitlines()) == 1
    verbose = rayfine("call", name, "evaluate", "--arg", 'answer=""', "-v", check=False)
    assert (
        verbose.returncode == 1
        and "remote traceback" in verbose.stderr
        and "env.py" in verbose.stderr
    )
    assert_clean_error(rayfine("call", name, "nope", check=False), 2, "no method 'nope'")
    assert_clean_error(
        rayfine("call", name, "evaluate", "--arg", "wrong=1", check=False), 2, "TypeError"
    )

    assert "ready, expecting 'Rome'" in rayfine("logs", name).stdout

    result = rayfine("stop", name)
    assert result.stdout.strip() == name
    assert not state_file.exists()
    assert_clean_error(rayfine("call", name, "hello", check=False), 2, "No detached environment")
    assert name not in rayfine("ps").stdout


def test_logs_follow_ends_when_the_container_stops(rayfine, running, cli_env):
    rayfine("call", running, "hello")  # the actor prints its "ready" line when first used
    follower = subprocess.Popen(
        [str(RAYFINE), "logs", "-f", running],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env,
    )
    try:
        first: list[str] = []
        reader = threading.Thread(
            target=lambda: first.append(follower.stdout.readline()), daemon=True
        )
        reader.start()
        reader.join(30)
        assert first and "ready" in first[0]
        rayfine("stop", running)
        assert follower.wait(timeout=30) == 0
    finally:
        follower.kill()
        follower.communicate()


def test_stop_several_and_stop_all(rayfine, image, cli_env):
    names = [unique("all"), unique("all"), unique("all")]
    try:
        starts = [
            subprocess.Popen(
                [str(RAYFINE), "run", image, "--name", name],
                env=cli_env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for name in names
        ]
        assert [p.wait(timeout=120) for p in starts] == [0, 0, 0], [p.stderr.read() for p in starts]
        assert rayfine("stop", *names[:2]).stdout.split() == names[:2]
        # --all: what this state directory recorded, never other sessions' detached containers
        assert rayfine("stop", "--all").stdout.split() == names[2:]
        assert "no detached" in rayfine("stop", "--all").stderr
    finally:
        for name in names:
            remove(rayfine, name)


def test_stop_refuses_a_container_rayfine_did_not_start(rayfine):
    name = "rayfine-cli-foreign"
    docker_rm(name)
    subprocess.run(
        ["docker", "run", "-d", "--name", name, BASE_IMAGE, "sleep", "60"],
        check=True,
        capture_output=True,
    )
    try:
        result = rayfine("stop", name, check=False)
        assert_clean_error(result, 1, "was not started by Rayfine")
        state = subprocess.run(
            ["docker", "inspect", "-f", "{{.State.Running}}", name], capture_output=True, text=True
        )
        assert state.stdout.strip() == "true"
        assert_clean_error(rayfine("logs", name, check=False), 1, "was not started by Rayfine")
    finally:
        docker_rm(name)


def test_detached_env_survives_its_process_and_attach_cleans_up(
    rayfine, image, cli_env, monkeypatch
):
    """The Python API under the CLI: detach() in one process, attach() in another."""
    name = unique("api")
    code = (
        "import rayfine_core as rf\n"
        f"env = rf.load_env({image!r}, container_name={name!r}, labels={{{labels.DETACHED!r}: '1'}})\n"
        "env.detach()\n"
        "assert env.id not in rf.list_active_environments()\n"
        "print(env.handle.endpoint.unix_socket)\n"
    )
    try:
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=cli_env, timeout=120
        )
        assert out.returncode == 0, out.stderr
        sock = Path(out.stdout.strip())
        assert sock.exists(), "interpreter exit removed the detached env's socket"

        monkeypatch.setenv("XDG_STATE_HOME", cli_env["XDG_STATE_HOME"])
        from rayfine_core import attach
        from rayfine_core.environment.statefiles import find

        record = find(name)
        env = attach(record.container_id[:12])
        assert env.name == name and env.env_type is EnvType.FUNCTION_BASED
        assert env.evaluate(answer="Paris")["score"] == 1.0
        env.cleanup()
        assert not record.path.exists() and not sock.parent.exists()
        gone = subprocess.run(["docker", "inspect", name], capture_output=True)
        assert gone.returncode != 0
    finally:
        remove(rayfine, name)


def test_restart_of_a_detached_env_updates_its_state_file(rayfine, image, cli_env, monkeypatch):
    """After restart=True replaces a dead container, attach() reaches the new one."""
    monkeypatch.setenv("XDG_STATE_HOME", cli_env["XDG_STATE_HOME"])
    from rayfine_core import attach, errors, load_env
    from rayfine_core.environment.statefiles import find as find_detached

    name = unique("restart")
    try:
        env = load_env(image, container_name=name, restart=True, labels={labels.DETACHED: "1"})
        env.detach()
        old = find_detached(name)
        subprocess.run(["docker", "kill", name], capture_output=True, check=True)
        with pytest.raises(errors.ContainerDiedError):
            env.evaluate(answer="Paris")
        new = find_detached(name)
        assert new.container_id != old.container_id and new.container_id == env.handle.id
        again = attach(name)
        assert again.evaluate(answer="Paris")["score"] == 1.0
        again.cleanup()
        assert not new.path.exists()
    finally:
        remove(rayfine, name)


# -- plugins, doctor ------------------------------------------------------------------


def test_plugins_lists_docker_with_its_distribution(rayfine):
    assert "rayfine-docker" in rayfine("plugins").stdout
    data = json.loads(rayfine("plugins", "--json").stdout)
    docker = next(r for r in data["runtimes"] if r["runtime"] == "docker")
    assert docker["distribution"].startswith("rayfine-docker ")
    assert isinstance(data["failed"], dict)


def test_doctor_reports_docker_usable(rayfine):
    result = rayfine("doctor", "--json")
    report = json.loads(result.stdout)
    assert "docker" in report["usable_runtimes"]
    assert any(c["check"] == "python" for c in report["host"])
    assert "docker" in rayfine("doctor").stdout


def test_doctor_gives_a_fix_for_a_missing_base_image(rayfine, cli_env):
    env = {**cli_env, "RAYFINE_BASE_IMAGE": "rayfine-cli-no-such-base:1"}
    text = subprocess.run(
        [str(RAYFINE), "doctor"], capture_output=True, text=True, env=env, timeout=120
    )
    assert "rayfine-cli-no-such-base:1 is not in docker" in text.stdout
    assert "fix: " in text.stdout.split("rayfine-cli-no-such-base:1 is not in docker", 1)[1]
    result = subprocess.run(
        [str(RAYFINE), "doctor", "--json"], capture_output=True, text=True, env=env, timeout=120
    )
    report = json.loads(result.stdout)
    assert "docker" not in report["usable_runtimes"]
    assert result.returncode == (0 if report["usable_runtimes"] else 1) == text.returncode


# -- the http scaffold ----------------------------------------------------------------


def test_init_http_scaffold_is_detected_as_http_based(rayfine, tmp_path):
    rayfine("init", "web", "--type", "http", "--dir", str(tmp_path))
    root = tmp_path / "web"
    assert sorted(os.listdir(root)) == ["Dockerfile", "README.md", "env.py", "requirements.txt"]
    dockerfile = (root / "Dockerfile").read_text()
    assert "ARG RAYFINE_BASE_IMAGE" in dockerfile and "FROM ${RAYFINE_BASE_IMAGE}" in dockerfile
    assert "--find-links wheels" in dockerfile and '"0.0.0.0", "--port", "8000"' in dockerfile
    assert "fastapi" in (root / "requirements.txt").read_text()
    info = inspect_env_dir(root)
    assert info.env_type is EnvType.HTTP_BASED and info.app_name == "app"


def test_http_scaffold_with_wheels_builds_and_runs_offline(rayfine, tmp_path):
    from rayfine_core.build.wheelhouse import wheels_dir

    if not (wheels_dir() / ".complete").exists():
        pytest.skip("Rayfine's wheel cache is empty (the first function-based build fills it)")
    rayfine("init", "web", "--type", "http", "--wheels", "--dir", str(tmp_path))
    assert any(p.name.startswith("fastapi-") for p in (tmp_path / "web" / "wheels").iterdir())
    tag, name = "rayfine-cli-test-http:latest", unique("http")
    rayfine("build", str(tmp_path / "web"), "-t", tag, "--quiet")
    try:
        started = rayfine("run", tag, "--name", name).stdout
        assert "endpoint:  unix:" in started  # behind Rayfine's server, like function-based envs
        assert "evaluate" in rayfine("methods", name).stdout
        result = json.loads(
            rayfine("call", name, "evaluate", "--arg", "answer= paris ", "--json").stdout
        )
        assert result == {"answer": " paris ", "expected": "Paris", "score": 1.0}
        assert_clean_error(
            rayfine("call", name, "evaluate", "--args-json", '{"answer": 3}', check=False),
            2,
            "must be str",
        )
        rayfine("stop", name)
    finally:
        remove(rayfine, name)
