"""Fixtures running the real server in process (a thread with its own event loop) on a
Unix socket in a private temporary directory, for an env.py written into tmp_path."""

from __future__ import annotations

import shutil
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import httpx
import pytest
from server_helpers import TOKEN, RunningServer

from rayfine_server.config import ServerConfig

WriteEnv = Callable[..., Path]
Serve = Callable[..., RunningServer]
MakeClient = Callable[..., httpx.Client]


@pytest.fixture(autouse=True)
def isolated_imports(tmp_path: Path) -> Iterator[None]:
    """Give every test a fresh ``env`` module and leave ``sys.path`` as it found it.

    Only ``env`` and modules imported from tmp_path are forgotten: dropping
    anything else would break later tests.
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
    """Run ``@pytest.mark.anyio`` tests on asyncio only."""
    return "asyncio"


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: Unix socket paths are limited to ~100 bytes."""
    path = Path(tempfile.mkdtemp(prefix="rf"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


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
def serve(write_env: WriteEnv, short_dir: Path) -> Iterator[Serve]:
    """Start a server for ``source`` as env.py; stopped after the test.

    Options are ``ServerConfig`` fields (``max_threads=2``, ``eager=True``, ...)
    plus ``siblings`` (name -> source of modules next to env.py).
    """
    running: List[RunningServer] = []

    def start(
        source: Optional[str] = None, *, env_dir: Optional[Path] = None, **options: Any
    ) -> RunningServer:
        siblings: Dict[str, str] = options.pop("siblings", None) or {}
        if env_dir is None:
            env_dir = write_env(source or "", **siblings)
        settings: Dict[str, Any] = {"token": TOKEN, "max_threads": 8, **options}
        sock = short_dir / f"s{len(running)}.sock"
        config = ServerConfig(env_dir=env_dir, uds=str(sock), **settings)
        server = RunningServer(config)
        running.append(server)
        return server

    yield start
    for server in running:
        server.stop()


@pytest.fixture(scope="module")
def serve_shared() -> Iterator[Serve]:
    """Like ``serve``, but one server per test module (for tests that only make calls)."""
    directory = Path(tempfile.mkdtemp(prefix="rf"))
    running: List[RunningServer] = []

    def start(source: str, **options: Any) -> RunningServer:
        env_dir = directory / f"env{len(running)}"
        env_dir.mkdir()
        (env_dir / "env.py").write_text(textwrap.dedent(source), encoding="utf-8")
        settings: Dict[str, Any] = {"token": TOKEN, "max_threads": 8, **options}
        config = ServerConfig(
            env_dir=env_dir, uds=str(directory / f"s{len(running)}.sock"), **settings
        )
        server = RunningServer(config)
        running.append(server)
        return server

    yield start
    for server in running:
        server.stop()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def shared_client(serve_shared: Serve) -> MakeClient:
    """An httpx client to the module's one server for ``source`` (started on first use).

    For tests that only make calls and do not look at env.py's module state.
    """
    clients: Dict[str, httpx.Client] = {}

    def get(source: str) -> httpx.Client:
        if source not in clients:
            clients[source] = serve_shared(source).client()
        return clients[source]

    return get


@pytest.fixture
def make_client(serve: Serve) -> MakeClient:
    """An httpx client (sending the token) to a server for ``source``."""

    def make(source: str, **options: Any) -> httpx.Client:
        return serve(source, **options).client()

    return make
