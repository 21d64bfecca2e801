"""Building as an env author meets it, offline: the layer order, wheels/, pip's failures, output.

The edit loop's speed is measured on a real engine in ``bench/authoring_edit_loop.py``;
here the *structure* that makes it fast is checked (requirements before code,
the server before code), plus the parts that need no engine.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

import rayfine_core as rf
from rayfine_core import errors
from rayfine_core.build import builder, deps, diagnose, progress, wheelhouse
from rayfine_core.build.env_wheels import download_command, image_python, platform_tags
from rayfine_core.plugins.manager import get_manager
from rayfine_core.runtime import labels
from rayfine_core.testing import process_runtime

PYTHON = get_manager().server("python")
ENV = "class Actor:\n    def version(self) -> int:\n        return 1\n"


def make_env(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def fake_wheel(directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}-1.0-py3-none-any.whl"
    path.write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty zip: enough to be staged
    return path


# -- the default Dockerfile: dependencies, then the server, then the code ------------------


def steps_of(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith(("#", " "))]


def test_default_dockerfile_installs_requirements_before_copying_the_code(tmp_path):
    root = make_env(tmp_path / "env", {"env.py": ENV, "requirements.txt": "sympy==1.14.0\n"})
    fake_wheel(root / "wheels", "sympy")
    text = builder.default_dockerfile(deps.find_dependencies(root), "DIGEST", PYTHON)
    steps = steps_of(text)
    pip = next(i for i, s in enumerate(steps) if "pip install" in s)
    server = next(i for i, s in enumerate(steps) if "compileall" in s)
    code = steps.index("COPY env /app")
    label = next(i for i, s in enumerate(steps) if s.startswith("LABEL"))
    assert pip < server < code < label == len(steps) - 1
    # Every step after the code copy but the label would be rebuilt on each edit: none is.
    assert steps[code + 1 :] == [steps[label]]
    assert "--no-index --find-links /tmp/rayfine-deps/wheels" in steps[pip]
    assert "-r /tmp/rayfine-deps/requirements.txt" in steps[pip]
    assert "COPY deps /tmp/rayfine-deps" in steps[:pip]


def test_the_dependency_stage_does_not_see_the_code(tmp_path, monkeypatch):
    """What the pip step's layer depends on: requirements and wheels only, so editing env.py
    (or any other file) leaves the engine's cache for it intact."""
    root = make_env(
        tmp_path / "env",
        {"env.py": ENV, "requirements.txt": "-r base.txt\nmpmath==1.3.0\n", "base.txt": "x\n"},
    )
    fake_wheel(root / "wheels", "mpmath")
    found = deps.find_dependencies(root)
    assert found.files == ("requirements.txt", "base.txt") and found.separable
    staged = tmp_path / "deps"
    builder._stage_dependencies(found, staged)
    assert sorted(str(p.relative_to(staged)) for p in staged.rglob("*") if p.is_file()) == [
        "base.txt",
        "requirements.txt",
        "wheels/mpmath-1.0-py3-none-any.whl",
    ]


def test_local_path_requirements_install_after_the_copy_and_say_so(tmp_path):
    root = make_env(tmp_path / "env", {"env.py": ENV, "requirements.txt": "-e .\n"})
    found = deps.find_dependencies(root)
    assert not found.separable
    text = builder.default_dockerfile(found, "D", PYTHON)
    steps = steps_of(text)
    assert steps.index("COPY env /app") < next(i for i, s in enumerate(steps) if "pip" in s)
    assert any("local paths" in line for line in deps.describe(found))


def test_requirement_includes_cannot_leave_the_directory(tmp_path):
    root = make_env(tmp_path / "env", {"env.py": ENV, "requirements.txt": "-r ../secret.txt\n"})
    (tmp_path / "secret.txt").write_text("x\n")
    with pytest.raises(errors.ValidationError, match="inside"):
        deps.find_dependencies(root)


def test_wheels_without_requirements_install_every_wheel(tmp_path):
    root = make_env(tmp_path / "env", {"env.py": ENV})
    fake_wheel(root / "wheels", "tool")
    command = deps.pip_install_command(deps.find_dependencies(root), "/d", "/d")
    assert command is not None and command.endswith("/d/wheels/tool-1.0-py3-none-any.whl")
    assert (
        deps.pip_install_command(deps.find_dependencies(make_env(tmp_path / "e", {})), "/", "/")
        is None
    )


def test_find_links_adds_wheels_and_is_refused_with_a_dockerfile(tmp_path):
    root = make_env(tmp_path / "env", {"env.py": ENV, "requirements.txt": "extra\n"})
    fake_wheel(tmp_path / "more", "extra")
    found = deps.find_dependencies(root, [tmp_path / "more"])
    assert [w.name for w in found.wheels] == ["extra-1.0-py3-none-any.whl"]
    with pytest.raises(errors.ValidationError, match="not a directory"):
        deps.find_dependencies(root, [tmp_path / "missing"])
    (root / "Dockerfile").write_text("FROM x\n")
    with pytest.raises(errors.ValidationError, match="find_links is for environments without"):
        rf.build_image_from_env(root, "x:1", runtime="process", find_links=[tmp_path / "more"])


def test_process_build_lays_the_code_at_app_without_wheels(tmp_path):
    root = make_env(
        tmp_path / "env", {"env.py": ENV, "requirements.txt": "extra\n", "data.txt": "d"}
    )
    fake_wheel(root / "wheels", "extra")
    tag = "unit-authoring-layout:latest"
    rf.build_image_from_env(root, tag, runtime="process", quiet=True)
    image_id = rf.get_runtime("process").image_id(tag)
    app = process_runtime.store() / "images" / image_id / "root" / "app"
    assert sorted(p.name for p in app.iterdir()) == ["data.txt", "env.py", "requirements.txt"]
    with rf.load_env(tag, runtime="process") as env:
        assert env.version() == 1


def test_dockerignore_keeps_applying_under_env(tmp_path):
    root = make_env(
        tmp_path / "env", {"env.py": ENV, ".dockerignore": "# c\n*.log\n!keep.log\n/tmp\n"}
    )
    context = tmp_path / "context"
    context.mkdir()
    builder._translate_ignore_files(root, context)
    assert (context / ".dockerignore").read_text().splitlines() == [
        "env/*.log",
        "!env/keep.log",
        "env/tmp",
    ]


# -- dev images: never rebuilt for code --------------------------------------------------------


def test_dev_image_is_reused_across_code_edits_and_rebuilt_for_requirements(tmp_path):
    root = make_env(tmp_path / "devenv", {"env.py": ENV, "requirements.txt": "a==1\n"})
    tag = rf.build_dev_image(root, "process", quiet=True)
    assert tag == builder.dev_tag(root) and tag.startswith("rayfine-dev/devenv:")
    runtime = rf.get_runtime("process")
    first = runtime.image_labels(tag)[labels.CONTENT_HASH]
    image_id = runtime.image_id(tag)
    (root / "env.py").write_text(ENV.replace("return 1", "return 2"))
    (root / "helper.py").write_text("X = 1\n")
    assert rf.build_dev_image(root, "process", quiet=True) == tag
    assert runtime.image_id(tag) == image_id  # nothing was built
    (root / "requirements.txt").write_text("a==2\n")
    rf.build_dev_image(root, "process", quiet=True)
    assert runtime.image_labels(tag)[labels.CONTENT_HASH] != first
    matters = builder.dependency_inputs(root)
    assert matters(root / "requirements.txt") and matters(root / "wheels" / "a.whl")
    assert not matters(root / "env.py") and not matters(root / "helper.py")


def test_dev_image_has_no_code_and_different_directories_get_different_tags(tmp_path):
    one = make_env(tmp_path / "a" / "same", {"env.py": ENV})
    two = make_env(tmp_path / "b" / "same", {"env.py": ENV})
    assert builder.dev_tag(one) != builder.dev_tag(two)
    text = builder.default_dockerfile(deps.find_dependencies(one), "D", PYTHON, with_code=False)
    assert "COPY env /app" not in text
    http = make_env(tmp_path / "web", {"env.py": "from fastapi import FastAPI\napp = FastAPI()\n"})
    with pytest.raises(errors.ValidationError, match="http-based"):
        rf.build_dev_image(http, "process")


# -- pip failing in a build: the cause and the fix ---------------------------------------------

NO_INDEX_LOG = """\
Step 5/19 : RUN PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -r /tmp/rayfine-deps/requirements.txt
WARNING: Retrying (Retry(total=1, connect=None, read=None, redirect=None, status=None)) after connection broken by 'NewConnectionError('<pip._vendor.urllib3.connection.HTTPSConnection object at 0x7f>: Failed to establish a new connection: [Errno -3] Temporary failure in name resolution')': /simple/sympy/
ERROR: Could not find a version that satisfies the requirement sympy==1.14.0 (from versions: none)
ERROR: No matching distribution found for sympy==1.14.0"""


def failed(log: str) -> errors.ImageBuildError:
    return errors.ImageBuildError(
        "Building 'x:latest' failed: The command '/bin/sh -c PIP_BREAK_SYSTEM_PACKAGES=1 python3"
        " -m pip install -r requirements.txt' returned a non-zero code: 1",
        log,
    )


def test_pip_without_an_index_names_the_cause_and_the_fix(tmp_path):
    explained = diagnose.explain(failed(NO_INDEX_LOG), tmp_path, offline_wheels=False)
    first = str(explained).splitlines()[0]
    assert "could not reach a package index" in first
    assert f"rayfine wheels {tmp_path}" in first and "wheels" in first
    assert "returned a non-zero code" in str(explained)  # the engine's words are kept
    assert explained.log_tail == NO_INDEX_LOG


def test_a_wheel_missing_from_wheels_is_named(tmp_path):
    log = "ERROR: No matching distribution found for mpmath>=1.1.0 (from sympy)"
    first = str(diagnose.explain(failed(log), tmp_path, offline_wheels=True)).splitlines()[0]
    assert "no wheel of mpmath>=1.1.0" in first and "rayfine wheels" in first


def test_other_build_failures_are_left_alone(tmp_path):
    error = failed("E: Unable to locate package libfoo")
    assert diagnose.explain(error, tmp_path, offline_wheels=False) is error


def test_a_missing_base_image_without_a_registry_says_so(tmp_path):
    error = errors.ImageBuildError(
        "Building 'x' failed: Get \"https://registry-1.docker.io/v2/\": dial tcp: lookup"
        " registry-1.docker.io on 10.0.0.1:53: no such host"
    )
    first = str(diagnose.explain(error, tmp_path, False)).splitlines()[0]
    assert "base image is not on this host" in first and "RAYFINE_BASE_IMAGE" in first


# -- rayfine wheels: what it asks pip for -------------------------------------------------------


def test_wheels_are_downloaded_for_the_images_python_and_platform(tmp_path):
    assert image_python("python:3.11-slim") == "3.11"
    assert image_python("rayfine/python:3.12-bookworm") == "3.12"
    assert image_python("debian:12") is None
    command = download_command(tmp_path / "requirements.txt", tmp_path / "wheels", "3.11")
    text = " ".join(command)
    assert "download" in command and "--only-binary=:all:" in command
    assert "--python-version 3.11" in text and "--abi cp311" in text and "--abi none" in text
    assert "manylinux_2_17_" in text and "manylinux2014_" in text
    assert all(tag.startswith("manylinux") for tag in platform_tags("x86_64"))


def test_rayfine_wheels_needs_a_requirements_file(tmp_path):
    from rayfine_core.build.env_wheels import download_wheels

    with pytest.raises(errors.ValidationError, match=r"requirements\.txt"):
        download_wheels(make_env(tmp_path / "env", {"env.py": ENV}))


# -- output: stderr, clean lines, progress --------------------------------------------------------


def test_build_output_goes_to_stderr_without_terminal_codes(tmp_path, capsys):
    root = make_env(tmp_path / "env", {"env.py": ENV})
    rf.build_image_from_env(root, "unit-authoring-out:latest", runtime="process", nocache=True)
    out, err = capsys.readouterr()
    assert out == ""
    assert "rayfine: building unit-authoring-out:latest" in err and "rayfine: built" in err
    assert "\x1b" not in err and "\r" not in err


def test_on_output_gets_clean_lines(tmp_path):
    root = make_env(tmp_path / "env", {"env.py": ENV})
    lines: list[str] = []
    rf.build_image_from_env(
        root, "unit-authoring-cb:latest", runtime="process", on_output=lines.append
    )
    assert lines and all("\x1b" not in line and line.strip() for line in lines)


def test_clean_strips_colours_and_keeps_the_last_carriage_return_state():
    assert progress.clean("\x1b[91mWARNING: x\x1b[0m") == "WARNING: x"
    assert progress.clean("  10%|#   \r  55%|#### \r 100%|#####") == " 100%|#####"
    assert progress.clean("\x1b]0;title\x07done\x1b[K") == "done"


def test_a_terminal_gets_a_status_line_and_a_pipe_gets_lines():
    tty = io.StringIO()
    with progress.BuildOutput("building x", stream=tty, tty=True) as out:
        out("Step 3/9 : RUN pip install sympy")
        out("\x1b[91mCollecting sympy\x1b[0m")
        out("rayfine: a note")
    text = tty.getvalue()
    assert "step 3/9" in text and "Collecting sympy" in text and "\r\x1b[K" in text
    assert "rayfine: a note\n" in text and "\x1b[91m" not in text
    assert text.endswith("\r\x1b[K")  # the status line is cleared at the end
    pipe = io.StringIO()
    with progress.BuildOutput("building x", stream=pipe, tty=False) as out:
        out("Step 3/9 : RUN x\r\n\x1b[91mCollecting\x1b[0m")
    assert pipe.getvalue() == "Step 3/9 : RUN x\nCollecting\n"


def test_the_server_wheel_download_reports_each_wheel(tmp_path, monkeypatch):
    """The first build fetches the server's wheels: each one is reported, not 30 s of silence."""
    source = wheelhouse.wheels_dir()
    if not (source / ".complete").exists():
        pytest.skip("no filled wheel cache to copy from")
    monkeypatch.setenv("RAYFINE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("RAYFINE_FIND_LINKS", str(source))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    lines: list[str] = []
    wheelhouse.ensure_wheels(lines.append)
    fetched = [line for line in lines if re.match(r"rayfine: fetched \d+/\d+ server wheels", line)]
    total = len(list(source.glob("*.whl")))
    assert len(fetched) == total and fetched[-1].startswith(f"rayfine: fetched {total}/{total}")
