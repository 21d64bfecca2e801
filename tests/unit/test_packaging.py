"""The four distributions as built: one version, sibling pins, extras, ranges, licenses, markers.

Wheels and sdists are built here with hatchling's own builders (offline, no
isolated build environment), then read back like an installer reads them.
"""

from __future__ import annotations

import email.parser
import re
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest

import rayfine_core
import rayfine_server

hatchling = pytest.importorskip("hatchling", reason="the dev group installs hatchling")
from hatchling.builders.sdist import SdistBuilder  # noqa: E402
from hatchling.builders.wheel import WheelBuilder  # noqa: E402
from packaging.requirements import Requirement  # noqa: E402
from packaging.specifiers import SpecifierSet  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MEMBERS = {
    "rayfine-core": "rayfine_core",
    "rayfine-docker": "rayfine_docker",
    "rayfine-podman": "rayfine_podman",
    "rayfine-kubernetes": "rayfine_kubernetes",
    "rayfine-remote": "rayfine_remote",
    "rayfine-server": "rayfine_server",
}
HOOKED = (
    "rayfine_core",
    "rayfine_docker",
    "rayfine_podman",
    "rayfine_kubernetes",
    "rayfine_remote",
)
SIBLINGS = set(MEMBERS)


def build(member: Path, out: Path) -> Path:
    """A wheel built from an sdist of ``member`` (as `python -m build` and `uv build` do)."""
    sdist = Path(next(SdistBuilder(str(member)).build(directory=str(out))))
    with tarfile.open(sdist) as archive:
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        archive.extractall(out / "unpacked", **safe)
    (unpacked,) = (out / "unpacked").iterdir()
    return Path(next(WheelBuilder(str(unpacked)).build(directory=str(out), versions=["standard"])))


def metadata(wheel: Path):
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(archive.read(name).decode())


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    return {name: build(ROOT / directory, out / directory) for name, directory in MEMBERS.items()}


def requirements(wheel: Path) -> list[Requirement]:
    return [Requirement(line) for line in metadata(wheel).get_all("Requires-Dist") or []]


def test_one_version_for_all_four(wheels):
    version = rayfine_core.__version__
    assert {metadata(w)["Version"] for w in wheels.values()} == {version}
    assert rayfine_server.__version__ == version  # the server keeps a copy for images
    for wheel in wheels.values():
        for requirement in requirements(wheel):
            if requirement.name in SIBLINGS:
                assert str(requirement.specifier) == f"=={version}", (wheel.name, requirement)


def test_a_new_version_moves_every_pin_with_it(tmp_path):
    """The version is written once: bumping it re-pins every sibling."""
    for directory in MEMBERS.values():
        shutil.copytree(
            ROOT / directory, tmp_path / directory, ignore=shutil.ignore_patterns("tests")
        )
    init = tmp_path / "rayfine_core" / "src" / "rayfine_core" / "__init__.py"
    init.write_text(re.sub(r'__version__ = "[^"]+"', '__version__ = "9.8.7"', init.read_text()))
    for directory in ("rayfine_core", "rayfine_docker"):
        wheel = build(tmp_path / directory, tmp_path / "out" / directory)
        assert metadata(wheel)["Version"] == "9.8.7"
        pins = [str(r) for r in requirements(wheel) if r.name in SIBLINGS]
        assert pins and all("==9.8.7" in pin for pin in pins), pins


def test_a_runtime_extra_brings_the_server(wheels):
    extras: dict[str, set[str]] = {}
    for requirement in requirements(wheels["rayfine-core"]):
        match = re.search(r'extra == "([a-z]+)"', str(requirement.marker))
        if match:
            extras.setdefault(match.group(1), set()).add(requirement.name)
    assert extras == {
        "docker": {"rayfine-docker", "rayfine-server"},
        "podman": {"rayfine-podman", "rayfine-server"},
        "kubernetes": {"rayfine-kubernetes", "rayfine-server"},
        "remote": {"rayfine-remote"},
        "server": {"rayfine-server"},
        "all": {
            "rayfine-docker",
            "rayfine-podman",
            "rayfine-kubernetes",
            "rayfine-remote",
            "rayfine-server",
        },
    }


def test_host_dependencies_are_ranges_and_exact_pins_live_in_the_lock(wheels):
    for wheel in wheels.values():
        for requirement in requirements(wheel):
            if requirement.name not in SIBLINGS:
                operators = {spec.operator for spec in requirement.specifier}
                assert not operators & {"==", "==="}, (wheel.name, str(requirement))
    server = {r.name: r.specifier for r in requirements(wheels["rayfine-server"])}
    # what a project that moved on (or stayed behind) may have installed
    for name, version in {
        "pydantic": "2.12.5",
        "fastapi": "0.129.0",
        "starlette": "0.50.0",
    }.items():
        assert server.get(name, SpecifierSet()).contains(version), (name, version)
    for line in rayfine_server.locked_requirements():
        assert re.fullmatch(r"[a-z0-9-]+==[0-9][0-9a-z.]*( .*)?", line), line


def test_licenses_typed_markers_and_the_alias_ship(wheels):
    license_text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    for name, wheel in wheels.items():
        with zipfile.ZipFile(wheel) as archive:
            names = archive.namelist()
            licenses = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
            assert len(licenses) == 1 and archive.read(licenses[0]).decode() == license_text
            assert f"{MEMBERS[name]}/py.typed" in names
            assert not [n for n in names if "hatch_build" in n or "/tests/" in n]
        assert metadata(wheel)["License-Expression"] == "Apache-2.0"
    with zipfile.ZipFile(wheels["rayfine-core"]) as archive:
        assert {"rayfine_env/__init__.py", "rayfine_env/py.typed"} <= set(archive.namelist())
    hooks = {
        (ROOT / m / "hatch_build.py").read_text()
        for m in ("rayfine_core", "rayfine_docker", "rayfine_podman")
    }
    assert len(hooks) == 1  # one hook, copied into each distribution that pins a sibling


def test_python_versions_classifiers_and_urls(wheels):
    supported = [f"3.{minor}" for minor in range(9, 14)]
    for wheel in wheels.values():
        meta = metadata(wheel)
        assert meta["Requires-Python"] == ">=3.9"
        classifiers = meta.get_all("Classifier") or []
        assert [
            c.rsplit(" ", 1)[1] for c in classifiers if re.search(r"Python :: 3\.\d+$", c)
        ] == supported
        assert "Typing :: Typed" in classifiers and not [
            c for c in classifiers if c.startswith("License ::")
        ]
        urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
        assert {"Homepage", "Repository", "Issues"} <= set(urls)
