"""The server ships a complete lock and imports only what the image has."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

import rayfine_server

DISTRIBUTION_DIR = Path(__file__).resolve().parents[1]
# What the image has besides the standard library (the lock's import names).
ALLOWED_IMPORTS = {
    "fastapi",
    "starlette",
    "pydantic",
    "pydantic_core",
    "anyio",
    "uvicorn",
    "h11",
    "click",
    "typing_extensions",
    "annotated_types",
    "idna",
    "rayfine_server",
}
EXPECTED_LOCKED = {
    "annotated-doc",
    "annotated-types",
    "anyio",
    "click",
    "exceptiongroup",
    "fastapi",
    "h11",
    "idna",
    "pydantic",
    "pydantic-core",
    "starlette",
    "typing-extensions",
    "typing-inspection",
    "uvicorn",
}


def locked() -> dict:
    pins = {}
    for line in rayfine_server.locked_requirements():
        match = re.fullmatch(r"([a-z0-9-]+)==([0-9][0-9a-z.]*)", line)
        assert match, f"not an exact, normalised pin: {line!r}"
        pins[match.group(1)] = match.group(2)
    return pins


def test_lock_pins_every_runtime_dependency_exactly():
    assert set(locked()) == EXPECTED_LOCKED


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is new in Python 3.11")
def test_the_lock_satisfies_the_host_ranges():
    """Host dependencies are ranges; the exact pins the images get must fall inside them."""
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((DISTRIBUTION_DIR / "pyproject.toml").read_text())["project"]
    pins = locked()
    for text in project["dependencies"]:
        requirement = Requirement(text)
        assert requirement.specifier.contains(pins[requirement.name]), (
            text,
            pins[requirement.name],
        )


@pytest.mark.skipif(sys.version_info < (3, 10), reason="sys.stdlib_module_names is new in 3.10")
def test_server_imports_only_what_the_image_has():
    allowed = ALLOWED_IMPORTS | set(sys.stdlib_module_names)
    for path in rayfine_server.PACKAGE_DIR.glob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"


def test_lock_ships_inside_the_package():
    assert rayfine_server.LOCK_FILE.parent == rayfine_server.PACKAGE_DIR
    assert rayfine_server.LOCK_FILE.is_file()
