"""What Rayfine does on the host cannot be turned against its user: private dirs, builds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import rayfine_core as rf
from rayfine_core import errors
from rayfine_core.environment import rundir


@pytest.fixture
def fresh_tmp(tmp_path, monkeypatch):
    """A TMPDIR of our own, so the run root is made (or faked) here."""
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    return tmp_path


def test_run_root_is_created_private(fresh_tmp):
    root = rundir.root()
    assert root == fresh_tmp / f"rayfine-{os.getuid()}"
    assert oct(root.stat().st_mode)[-3:] == "700"


@pytest.mark.skipif(os.getuid() != 0, reason="making a directory another user owns needs root")
def test_run_root_owned_by_another_user_is_refused(fresh_tmp):
    squatted = fresh_tmp / f"rayfine-{os.getuid()}"
    squatted.mkdir(mode=0o700)
    os.chown(squatted, 65534, 65534)
    with pytest.raises(errors.ValidationError, match="belongs to uid 65534"):
        rundir.root()


def test_run_root_with_open_mode_or_as_a_link_is_refused(fresh_tmp):
    root = fresh_tmp / f"rayfine-{os.getuid()}"
    root.mkdir(mode=0o700)
    root.chmod(0o755)
    with pytest.raises(errors.ValidationError, match="mode 0755"):
        rundir.root()
    root.rmdir()
    (fresh_tmp / "elsewhere").mkdir(mode=0o700)
    root.symlink_to(fresh_tmp / "elsewhere")
    with pytest.raises(errors.ValidationError, match="not a directory"):
        rundir.root()


def test_socket_path_too_long_is_said_at_once(tmp_path, monkeypatch):
    deep = tmp_path / ("d" * 90)
    deep.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(deep))
    with pytest.raises(errors.ValidationError, match="longer than the 107"):
        rundir.create("abcdef012345")


def test_run_dir_names_from_labels_are_never_paths():
    assert rundir.path_of("../../etc") is None and rundir.path_of("") is None


def _env_dir(tmp_path: Path) -> Path:
    env = tmp_path / "env"
    env.mkdir()
    (env / "env.py").write_text("def f():\n    return 1\n")
    return env


def test_a_link_out_of_the_env_dir_is_refused_by_name(tmp_path):
    secret = tmp_path / "id_rsa"
    secret.write_text("PRIVATE KEY")
    env = _env_dir(tmp_path)
    (env / "keys").symlink_to(tmp_path)
    with pytest.raises(errors.EnvDefinitionError, match="keys is a symbolic link.*outside"):
        rf.build_image_from_env(env, "unit-links:latest", quiet=True, runtime="process")
    (env / "keys").unlink()
    (env / "env.py").rename(env / "real.py")
    (env / "env.py").symlink_to(secret)
    with pytest.raises(errors.EnvDefinitionError, match="env.py is a symbolic link"):
        rf.build_image_from_env(env, "unit-links:latest", quiet=True, runtime="process")


def test_a_build_never_writes_through_the_users_files(tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    env = _env_dir(tmp_path)
    inside = env / "notes.txt"
    inside.write_text("mine")
    (env / ".rayfine.Dockerfile").symlink_to("notes.txt")  # a link inside: allowed, kept a link
    os.link(target, env / "hardlinked.txt")  # a hard link to a file outside: copied, not aliased
    rf.build_image_from_env(env, "unit-links:latest", quiet=True, runtime="process")
    assert inside.read_text() == "mine" and target.read_text() == "keep me"
    assert (env / ".rayfine.Dockerfile").is_symlink()


def test_links_inside_the_env_dir_are_kept(tmp_path):
    env = _env_dir(tmp_path)
    (env / "data").mkdir()
    (env / "data" / "a.txt").write_text("a")
    (env / "alias.txt").symlink_to("data/a.txt")
    rf.build_image_from_env(env, "unit-inside-links:latest", quiet=True, runtime="process")
