"""Test layout: ``tests/unit`` runs offline in seconds; ``tests/engine`` needs docker/podman.

Every test under ``tests/engine`` is marked ``engine``.  Every other test runs
with a guard plugin that refuses (through Rayfine's own ``rayfine_start`` and
``rayfine_build`` hooks) any build or start on a runtime other than the
``process`` test double (or a subclass of it), so ``pytest -m "not engine"`` can never touch an
engine, even by mistake.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterator

import pytest

import rayfine_core as rf
from rayfine_core import BuildRequest, StartRequest, get_runtime, hookimpl
from rayfine_core.plugins.manager import register, unregister
from rayfine_core.testing.envs import ENVS
from rayfine_core.testing.process_runtime import ProcessRuntime

ENGINE_TESTS = Path(__file__).parent / "engine"
os.environ.setdefault("RAYFINE_BASE_IMAGE", "rayfine/python:3.11-bookworm")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if ENGINE_TESTS in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.engine)


class _OfflineGuard:
    """Refuses engine work in a test not marked ``engine``."""

    @hookimpl
    def rayfine_start(self, request: StartRequest, runtime: str) -> None:
        self._refuse("start", runtime)

    @hookimpl
    def rayfine_build(self, request: BuildRequest, runtime: str) -> None:
        self._refuse("build", runtime)

    @staticmethod
    def _refuse(what: str, runtime: str) -> None:
        if not isinstance(get_runtime(runtime), ProcessRuntime):
            raise AssertionError(
                f"an offline test asked runtime {runtime!r} to {what}; mark it `engine`"
                " (or put it under tests/engine) or use runtime='process'"
            )


@pytest.fixture(autouse=True)
def _offline_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.get_closest_marker("engine") is not None:
        yield
        return
    name = register(_OfflineGuard(), name="rayfine-offline-guard")
    try:
        yield
    finally:
        unregister(name)


@pytest.fixture(scope="session", autouse=True)
def _private_store(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Offline tests keep their process-runtime images and records to themselves."""
    mp = pytest.MonkeyPatch()
    mp.setenv("RAYFINE_PROCESS_STORE", str(tmp_path_factory.mktemp("process-store")))
    mp.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))


@pytest.fixture(scope="session")
def sample_image(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], str]:
    """``sample_image(name, runtime)``: a sample env (``rayfine_core.testing.envs``), built once."""
    built: dict[tuple[str, str], str] = {}

    def build(name: str, runtime: str) -> str:
        if (name, runtime) not in built:
            env_dir = Path(tmp_path_factory.mktemp(name))
            source = ENVS[name]
            files = dict(source) if isinstance(source, dict) else {"env.py": str(source)}
            for file_name, content in files.items():
                (env_dir / file_name).write_text(content)
            tag = f"tests-{name}:{runtime}"
            rf.build_image_from_env(env_dir, tag, quiet=True, runtime=runtime)
            built[name, runtime] = tag
        return built[name, runtime]

    return build


@pytest.fixture(scope="session")
def process_image(sample_image: Callable[[str, str], str]) -> Callable[[str], str]:
    """Build one of the conformance suite's sample envs for the process runtime; return its tag."""
    return lambda name: sample_image(name, "process")


@pytest.fixture
def kitchen(process_image: Callable[[str], str]) -> str:
    return process_image("kitchen-sink")
