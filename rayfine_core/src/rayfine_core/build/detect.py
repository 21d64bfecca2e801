"""Tell what kind of environment a directory holds, by reading, never importing.

env.py is untrusted code, so the host only parses it with :mod:`ast`.
"""

from __future__ import annotations

import ast
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import EnvDefinitionError
from ..runtime.types import EnvType
from .context import walk

_FASTAPI_FACTORIES = {"FastAPI", "Starlette"}


@dataclass(frozen=True)
class EnvInfo:
    """What parsing an environment directory found."""

    path: Path
    env_type: EnvType
    has_actor: bool
    functions: tuple[str, ...]
    app_name: Optional[str]
    dockerfile: Optional[Path]


def inspect_env_dir(env_path: str | os.PathLike[str]) -> EnvInfo:
    """Parse ``env_path/env.py`` (and its Dockerfile) and classify it."""
    path = Path(env_path).expanduser()
    if not path.is_dir():
        raise EnvDefinitionError(
            f"Environment directory {str(path)!r} does not exist (or is not a directory)."
        )
    for _ in walk(path):  # refuses links out of the directory before anything is read
        pass
    env_file = path / "env.py"
    if not env_file.is_file():
        raise EnvDefinitionError(
            f"No env.py in {str(path)!r}. An environment directory needs an env.py that defines an"
            " `Actor` class, public functions, or a FastAPI `app` (try `rayfine init NAME`)."
        )
    tree = _parse(env_file)
    has_actor, functions, app_name = _scan_module(tree)
    dockerfile = path / "Dockerfile"
    dockerfile_path = dockerfile if dockerfile.is_file() else None
    cmd_runs_uvicorn = dockerfile_path is not None and _cmd_runs_uvicorn(
        dockerfile_path.read_text(errors="replace")
    )
    if app_name or cmd_runs_uvicorn:
        env_type = EnvType.HTTP_BASED
    elif has_actor or functions:
        env_type = EnvType.FUNCTION_BASED
    else:
        raise EnvDefinitionError(
            f"{env_file} defines nothing to call: add a class `Actor` with public methods, public"
            " module-level functions, or a FastAPI `app = FastAPI()`."
        )
    return EnvInfo(path, env_type, has_actor, tuple(functions), app_name, dockerfile_path)


def _parse(env_file: Path) -> ast.Module:
    source = env_file.read_bytes()
    try:
        return ast.parse(source, filename=str(env_file))
    except SyntaxError as exc:
        where = f"{env_file}:{exc.lineno}:{exc.offset or 0}"
        raise EnvDefinitionError(
            f"env.py does not parse ({where}): {exc.msg}. Fix the syntax and build again."
        ) from exc
    except ValueError as exc:  # e.g. null bytes
        raise EnvDefinitionError(f"env.py cannot be parsed: {exc}") from exc


def _scan_module(tree: ast.Module) -> tuple[bool, list[str], Optional[str]]:
    has_actor = False
    functions: list[str] = []
    app_name: Optional[str] = None
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "Actor":
            has_actor = True
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith(
            "_"
        ):
            functions.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and _is_app_factory_call(node.value):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.id for t in targets if isinstance(t, ast.Name)]
            app_name = app_name or (names[0] if names else None)
    return has_actor, functions, app_name


def _is_app_factory_call(value: Optional[ast.expr]) -> bool:
    if not isinstance(value, ast.Call):
        return False
    func = value.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return name in _FASTAPI_FACTORIES


_CMD_RE = re.compile(r"^\s*(CMD|ENTRYPOINT)\s+(.+)$", re.IGNORECASE | re.MULTILINE)


def _cmd_runs_uvicorn(dockerfile_text: str) -> bool:
    """True if the last CMD/ENTRYPOINT starts uvicorn (or another ASGI server)."""
    joined = re.sub(r"\\\r?\n", " ", dockerfile_text)
    matches = _CMD_RE.findall(joined)
    if not matches:
        return False
    command = matches[-1][1]
    try:
        words = json.loads(command) if command.strip().startswith("[") else command.split()
    except json.JSONDecodeError:
        words = command.split()
    text = " ".join(str(w) for w in words)
    return bool(re.search(r"\b(uvicorn|hypercorn|gunicorn)\b", text))
