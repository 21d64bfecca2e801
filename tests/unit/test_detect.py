"""Environment type detection reads env.py with ast and never imports it."""

from __future__ import annotations

from pathlib import Path

import pytest

from rayfine_core.build.detect import inspect_env_dir
from rayfine_core.errors import EnvDefinitionError
from rayfine_core.runtime.types import EnvType


def write(tmp_path: Path, source: str, dockerfile: str | None = None) -> Path:
    (tmp_path / "env.py").write_text(source)
    if dockerfile is not None:
        (tmp_path / "Dockerfile").write_text(dockerfile)
    return tmp_path


def test_actor_is_function_based(tmp_path):
    info = inspect_env_dir(write(tmp_path, "class Actor:\n    def go(self):\n        return 1\n"))
    assert info.env_type is EnvType.FUNCTION_BASED and info.has_actor


def test_module_functions_are_function_based(tmp_path):
    info = inspect_env_dir(
        write(tmp_path, "def add(a, b):\n    return a + b\ndef _hidden():\n    pass\n")
    )
    assert info.env_type is EnvType.FUNCTION_BASED and info.functions == ("add",)


def test_fastapi_app_is_http_based(tmp_path):
    info = inspect_env_dir(
        write(tmp_path, "from fastapi import FastAPI\napp = FastAPI(title='x')\n")
    )
    assert info.env_type is EnvType.HTTP_BASED and info.app_name == "app"


def test_dockerfile_cmd_uvicorn_is_http_based(tmp_path):
    source = "from myapp import make\napplication = make()\n"
    info = inspect_env_dir(
        write(tmp_path, source, 'FROM x\nCMD ["uvicorn", "env:application", "--port", "8000"]\n')
    )
    assert info.env_type is EnvType.HTTP_BASED


def test_env_py_is_not_imported(tmp_path):
    marker = tmp_path / "imported"
    write(tmp_path, f"open({str(marker)!r}, 'w').close()\nclass Actor:\n    pass\n")
    inspect_env_dir(tmp_path)
    assert not marker.exists()


def test_missing_directory(tmp_path):
    with pytest.raises(EnvDefinitionError, match="does not exist"):
        inspect_env_dir(tmp_path / "nope")


def test_missing_env_py(tmp_path):
    with pytest.raises(EnvDefinitionError, match="No env.py"):
        inspect_env_dir(tmp_path)


def test_syntax_error_names_the_line(tmp_path):
    write(tmp_path, "class Actor:\n    def broken(self:\n")
    with pytest.raises(EnvDefinitionError, match=r"env.py:2"):
        inspect_env_dir(tmp_path)


def test_nothing_to_call(tmp_path):
    write(tmp_path, "X = 1\n")
    with pytest.raises(EnvDefinitionError, match="defines nothing to call"):
        inspect_env_dir(tmp_path)
