"""``import rayfine_env as rf_env`` is rayfine_core under the original project's name."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import rayfine_core
import rayfine_env as rf_env


def test_every_public_name_is_the_same_object():
    assert rf_env.__all__ == rayfine_core.__all__
    assert {"build_image_from_env", "load_env", "aload_env", "RayfineError"} <= set(rf_env.__all__)
    for name in rayfine_core.__all__:
        assert getattr(rf_env, name) is getattr(rayfine_core, name), name
    assert rf_env.__version__ == rayfine_core.__version__


def test_errors_are_importable_from_the_alias():
    from rayfine_env.errors import ImageBuildError, RayfineError

    assert RayfineError is rayfine_core.errors.RayfineError
    assert issubclass(ImageBuildError, rf_env.RayfineError)


def test_the_alias_defines_nothing_of_its_own():
    tree = ast.parse(Path(rf_env.__file__).read_text())
    defined = [
        node
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda))
    ]
    assert defined == []


def test_importing_the_alias_stays_light():
    heavy = ("docker", "podman", "uvicorn", "starlette")
    code = f"import sys, rayfine_env; print(sorted(set({heavy!r}) & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
