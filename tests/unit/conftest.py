"""Fixtures for offline tests: sample environments built for the ``process`` test runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

import rayfine_core as rf
from rayfine_core.testing.envs import ENVS


@pytest.fixture(scope="session", autouse=True)
def _private_store(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Offline tests keep their process-runtime images and records to themselves."""
    mp = pytest.MonkeyPatch()
    mp.setenv("RAYFINE_PROCESS_STORE", str(tmp_path_factory.mktemp("process-store")))
    mp.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))


@pytest.fixture(scope="session")
def process_image(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], str]:
    """Build one of the conformance suite's sample envs for the process runtime; return its tag."""
    built: dict[str, str] = {}

    def build(name: str) -> str:
        if name not in built:
            env_dir = Path(tmp_path_factory.mktemp(name))
            source = ENVS[name]
            files = dict(source) if isinstance(source, dict) else {"env.py": str(source)}
            for file_name, content in files.items():
                (env_dir / file_name).write_text(content)
            tag = f"unit-{name}:latest"
            rf.build_image_from_env(env_dir, tag, quiet=True, runtime="process")
            built[name] = tag
        return built[name]

    return build


@pytest.fixture
def kitchen(process_image: Callable[[str], str]) -> str:
    return process_image("kitchen-sink")
