"""pytest plugin: ``--rayfine-runtime``, the runtime's capabilities, and fixtures for runtime tests."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Callable, Iterator

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
    group.addoption(
        "--rayfine-isolation",
        action="store",
        default=os.environ.get("RAYFINE_TEST_ISOLATION", "container"),
        help="isolation level every environment of the suite starts with (default: container).",
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
def rayfine_isolation(request: pytest.FixtureRequest, rayfine_runtime: str) -> str:
    """The isolation level under test; the runtime must offer it (else the run fails)."""
    import rayfine_core as rf

    isolation = str(request.config.getoption("--rayfine-isolation"))
    offered = rf.get_runtime(rayfine_runtime).capabilities.isolation
    if isolation not in offered:
        raise pytest.UsageError(f"{rayfine_runtime} offers isolation {sorted(offered)}")
    return isolation


@pytest.fixture(scope="session")
def rayfine_capabilities(rayfine_runtime: str, rayfine_isolation: str):  # type: ignore[no-untyped-def]
    """The :class:`~rayfine_core.Capabilities` of the runtime under test at that isolation."""
    import rayfine_core as rf

    return rf.get_runtime(rayfine_runtime).capabilities_for(rayfine_isolation)


@pytest.fixture(scope="session")
def rayfine_load(rayfine_runtime: str, rayfine_isolation: str) -> Callable[..., Any]:
    """``load_env`` with the runtime and isolation under test filled in."""
    import rayfine_core as rf

    return functools.partial(rf.load_env, runtime=rayfine_runtime, isolation=rayfine_isolation)


@pytest.fixture(scope="session")
def rayfine_aload(rayfine_runtime: str, rayfine_isolation: str) -> Callable[..., Any]:
    """``aload_env`` with the runtime and isolation under test filled in."""
    import rayfine_core as rf

    return functools.partial(rf.aload_env, runtime=rayfine_runtime, isolation=rayfine_isolation)


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
