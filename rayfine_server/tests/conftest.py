"""Fixtures building an in-process server for an env.py written into tmp_path."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Callable, Dict, Optional

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient
from rayfine_server.app import create_app
from rayfine_server.config import ServerConfig

WriteEnv = Callable[..., Path]
MakeApp = Callable[..., Starlette]
MakeClient = Callable[..., TestClient]


@pytest.fixture(autouse=True)
def isolated_imports(tmp_path: Path) -> Iterator[None]:
    """Give every test a fresh ``env`` module and leave ``sys.path`` as it found it.

    Only ``env`` and modules imported from tmp_path are forgotten: dropping
    anything else (say, half of anyio) would break later tests.
    """
    saved_path = list(sys.path)
    sys.modules.pop("env", None)
    try:
        yield
    finally:
        sys.path[:] = saved_path
        sys.modules.pop("env", None)
        root = str(tmp_path)
        for name, module in list(sys.modules.items()):
            if str(getattr(module, "__file__", None) or "").startswith(root):
                del sys.modules[name]


@pytest.fixture
def anyio_backend() -> str:
    """Run ``@pytest.mark.anyio`` tests on asyncio only, like uvicorn does."""
    return "asyncio"


@pytest.fixture
def write_env(tmp_path: Path) -> WriteEnv:
    """Write ``env.py`` (dedented) and optional sibling files; return the env directory."""

    def write(source: str, **siblings: str) -> Path:
        env_dir = tmp_path / "envdir"
        env_dir.mkdir(exist_ok=True)
        (env_dir / "env.py").write_text(textwrap.dedent(source), encoding="utf-8")
        for name, text in siblings.items():
            (env_dir / f"{name}.py").write_text(textwrap.dedent(text), encoding="utf-8")
        return env_dir

    return write


@pytest.fixture
def make_app(write_env: WriteEnv) -> MakeApp:
    """Build the app serving ``source`` as env.py, next to ``siblings`` (name -> source)."""

    def make(
        source: str,
        *,
        token: Optional[str] = None,
        max_threads: int = 8,
        siblings: Optional[Dict[str, str]] = None,
    ) -> Starlette:
        env_dir = write_env(source, **(siblings or {}))
        config = ServerConfig(env_dir=env_dir, token=token, max_threads=max_threads)
        return create_app(config)

    return make


@pytest.fixture
def make_client(make_app: MakeApp) -> Iterator[MakeClient]:
    """A started ``TestClient`` for ``source``; closed after the test."""
    clients = []

    def make(source: str, **options: object) -> TestClient:
        client = TestClient(make_app(source, **options), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)
