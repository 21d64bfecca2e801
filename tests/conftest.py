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
from typing import Iterator

import pytest

from rayfine_core import BuildRequest, StartRequest, get_runtime, hookimpl
from rayfine_core.plugins.manager import register, unregister
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
