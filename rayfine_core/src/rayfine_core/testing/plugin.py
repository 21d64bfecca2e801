"""pytest plugin: ``--rayfine-runtime``, the runtime's capabilities, and fixtures for runtime tests."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterator

import pytest

from .envs import ENVS


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rayfine")
    group.addoption(
        "--rayfine-runtime",
        action="store",
        default=os.environ.get("RAYFINE_TEST_RUNTIME", "docker"),
        help="name of the Rayfine runtime the conformance suite runs against (default: docker).",
    )


@pytest.fixture(scope="session")
def rayfine_runtime(request: pytest.FixtureRequest) -> Iterator[str]:
    """Name of the runtime under test; fails (not skips) if its engine is unreachable."""
    import rayfine_core as rf

    name = str(request.config.getoption("--rayfine-runtime"))
    runtime = rf.get_runtime(name)
    runtime.version()  # raises EngineUnavailableError with what to do
    yield name
    rf.cleanup_all_environments()


@pytest.fixture(scope="session")
def rayfine_capabilities(rayfine_runtime: str):  # type: ignore[no-untyped-def]
    """The :class:`~rayfine_core.Capabilities` the runtime under test declares."""
    import rayfine_core as rf

    return rf.get_runtime(rayfine_runtime).capabilities


def requires(capabilities: object, name: str, why: str) -> None:
    """Skip the calling test, saying why, unless the runtime declares capability ``name``."""
    if not getattr(capabilities, name):
        pytest.skip(f"the runtime declares no {name!r} capability: {why}")


@pytest.fixture(scope="session")
def rayfine_image(
    rayfine_runtime: str, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], str]:
    """Build one of the suite's sample environments (see ``envs.py``) and return its tag."""
    import rayfine_core as rf

    built: dict[str, str] = {}

    def build(name: str) -> str:
        if name not in built:
            env_dir = Path(tmp_path_factory.mktemp(name))
            source = ENVS[name]
            files: dict[str, str] = (
                dict(source) if isinstance(source, dict) else {"env.py": str(source)}
            )
            for file_name, content in files.items():
                (env_dir / file_name).write_text(content)
            tag = f"rayfine-conformance-{name}:{rayfine_runtime}"
            rf.build_image_from_env(env_dir, tag, quiet=True, runtime=rayfine_runtime)
            built[name] = tag
        return built[name]

    return build
