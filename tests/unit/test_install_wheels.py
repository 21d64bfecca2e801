"""The in-image wheel installer: its tags against packaging's, and real wheels installed.

The tag logic runs under every Python 3.9-3.13 found on this host (pyenv, or
``RAYFINE_TEST_PYTHONS``) and must list exactly the tags, in exactly the order,
of ``packaging.tags.sys_tags()`` (packaging >= 26.3).  Wheels are built here
with ``zipfile`` and installed by the script itself, as the image runs it.
"""

from __future__ import annotations

import base64
import csv
import glob
import hashlib
import io
import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from typing import Optional
from unittest import mock

import packaging
import packaging.tags
import packaging.utils
import pytest

from rayfine_core.image import install_wheels as iw

SCRIPT = Path(iw.__file__)
PACKAGING_VERSION = tuple(int(part) for part in packaging.__version__.split(".")[:2])
needs_packaging_26_3 = pytest.mark.skipif(
    PACKAGING_VERSION < (26, 3), reason="linux_* tags moved ahead of manylinux in packaging 26.3"
)


def find_pythons() -> dict[str, str]:
    """``"3.X" -> interpreter`` for the newest patch release of each minor version here."""
    listed = os.environ.get("RAYFINE_TEST_PYTHONS")
    pyenv = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    found = listed.split(os.pathsep) if listed else glob.glob(f"{pyenv}/versions/3.*/bin/python3")
    pythons: dict[str, tuple[tuple[int, ...], str]] = {}
    for path in found:
        parts = Path(path).resolve().parent.parent.name.split(".")
        if len(parts) == 3 and all(p.isdigit() for p in parts) and os.access(path, os.X_OK):
            version = tuple(int(p) for p in parts)
            key = f"{version[0]}.{version[1]}"
            if version >= (3, 9) and (key not in pythons or pythons[key][0] < version):
                pythons[key] = (version, path)
    pythons.setdefault(f"{sys.version_info[0]}.{sys.version_info[1]}", ((), sys.executable))
    return {key: path for key, (_, path) in sorted(pythons.items())}


PYTHONS = find_pythons()
MINORS = ["3.9", "3.10", "3.11", "3.12", "3.13"]


def interpreter(minor: str) -> str:
    if minor not in PYTHONS:
        pytest.skip(f"no Python {minor} on this host (set RAYFINE_TEST_PYTHONS)")
    return PYTHONS[minor]


PROBE = """
import json, sys, sysconfig
sys.path.insert(0, sys.argv[1])
import install_wheels
var = sysconfig.get_config_var
out = {"ours": install_wheels.sys_tags(), "platform": sysconfig.get_platform(),
       "debug": var("Py_DEBUG"), "gil_disabled": var("Py_GIL_DISABLED"),
       "bits": 64 if sys.maxsize > 2**32 else 32, "implementation": sys.implementation.name}
try:
    import packaging, packaging.tags
    out["packaging"] = packaging.__version__
    out["native"] = [[t.interpreter, t.abi, t.platform] for t in packaging.tags.sys_tags()]
except (ImportError, SyntaxError):  # this packaging no longer runs on this Python
    pass
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def packaging_only(tmp_path_factory) -> str:
    """A directory holding only this host's packaging, for other interpreters' sys.path."""
    root = tmp_path_factory.mktemp("packaging-only")
    (root / "packaging").symlink_to(Path(packaging.__file__).parent)
    return str(root)


def probe(python: str, packaging_dir: str) -> dict:
    result = subprocess.run(
        [python, "-c", PROBE, str(SCRIPT.parent)],
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": packaging_dir},
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(result.stdout)
    data["ours"] = [tuple(tag) for tag in data["ours"]]
    if "native" in data:
        data["native"] = [tuple(tag) for tag in data["native"]]
    return data


def reference_tags(minor: str, abis: list[str]) -> list[tuple[str, str, str]]:
    """packaging's sys_tags() for a CPython ``minor`` on this machine, computed here."""
    version = tuple(int(p) for p in minor.split("."))
    platforms = list(packaging.tags.platform_tags())
    tags = list(packaging.tags.cpython_tags(version, abis, platforms))
    tags += packaging.tags.compatible_tags(version, f"cp{version[0]}{version[1]}", platforms)
    return [(t.interpreter, t.abi, t.platform) for t in tags]


@needs_packaging_26_3
@pytest.mark.parametrize("minor", MINORS)
def test_sys_tags_equal_packaging_under_each_python(minor, packaging_only):
    seen = probe(interpreter(minor), packaging_only)
    assert seen["implementation"] == "cpython" and seen["bits"] == 64
    assert seen["platform"] == sysconfig.get_platform()  # same machine, same libc as this process
    assert not seen["debug"] and not seen["gil_disabled"]
    nodot = minor.replace(".", "")
    assert seen["ours"] == reference_tags(minor, [f"cp{nodot}"])
    if "native" in seen:  # packaging itself, running in that interpreter
        assert seen["ours"] == seen["native"], seen["packaging"]
    else:
        assert minor == "3.9", "packaging >= 26 runs on Python 3.10+ only"


@needs_packaging_26_3
@pytest.mark.parametrize(
    "abis", [["cp313t"], ["cp313d", "cp313"], ["cp313td", "cp313t"], ["cp313", "abi3", "none"]]
)
def test_cpython_tags_for_debug_and_free_threaded_builds(abis):
    platforms = ["manylinux_2_17_x86_64", "linux_x86_64"]
    expected = [
        (t.interpreter, t.abi, t.platform)
        for t in packaging.tags.cpython_tags((3, 13), abis, platforms)
    ]
    assert iw.cpython_tags((3, 13), abis, platforms) == expected
    expected_generic = [
        (t.interpreter, t.abi, t.platform)
        for t in packaging.tags.generic_tags("pp310", ["pypy310_pp73"], platforms)
    ]
    assert iw.generic_tags("pp310", ["pypy310_pp73"], platforms) == expected_generic


@needs_packaging_26_3
@pytest.mark.parametrize(
    "machine, glibc, musl",
    [
        ("x86_64", (2, 17), None),
        ("x86_64", (2, 5), None),
        ("x86_64", (2, 39), None),
        ("x86_64", None, (1, 2)),
        ("aarch64", (2, 28), None),
        ("aarch64", (2, 12), None),  # older than any aarch64 manylinux
        ("aarch64", None, (1, 1)),
        ("armv8l", (2, 31), None),  # a 32-bit ARM userland: armv8l and armv7l
        ("i686", (2, 17), None),
        ("ppc64le", (2, 34), (1, 2)),
        ("riscv64", (2, 35), None),
        ("mips", (2, 31), None),  # no manylinux for this arch
    ],
)
def test_linux_platforms_equal_packaging_on_other_machines(machine, glibc, musl):
    from packaging import _manylinux, _musllinux

    musl_version = _musllinux._MuslVersion(*musl) if musl else None
    with (
        mock.patch.object(sysconfig, "get_platform", return_value=f"linux-{machine}"),
        mock.patch.object(_manylinux, "_get_glibc_version", return_value=glibc or (-1, -1)),
        mock.patch.object(_musllinux, "_get_musl_version", return_value=musl_version),
        mock.patch.object(
            _manylinux, "_have_compatible_abi", side_effect=lambda _, archs: machine != "mips"
        ),
    ):
        expected = list(packaging.tags._linux_platforms(is_32bit=False))
    archs = ["armv8l", "armv7l"] if machine == "armv8l" else [machine]
    fits = machine != "mips"
    assert iw.linux_platforms(archs, glibc if fits else None, musl) == expected


def test_a_distributor_can_veto_manylinux_levels():
    def allows(arch, version):  # e.g. a distribution that knows 2.17 wheels break here
        return version != (2, 17)

    tags = iw.linux_platforms(["x86_64"], (2, 28), None, allows)
    assert "manylinux_2_17_x86_64" not in tags and "manylinux2014_x86_64" not in tags
    assert "manylinux_2_16_x86_64" in tags


CORPUS = [
    "h11-0.16.0-py3-none-any.whl",
    "six-1.17.0-py2.py3-none-any.whl",
    "Typing_Extensions-4.16.0-PY3-NONE-ANY.whl",
    *[
        f"pydantic_core-2.46.5-cp3{m}-cp3{m}-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
        for m in range(9, 15)
    ],
    *[f"pydantic_core-2.46.5-cp3{m}-cp3{m}-musllinux_1_1_x86_64.whl" for m in range(9, 14)],
    "pydantic_core-2.46.5-cp313-cp313t-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    "pydantic_core-2.46.5-pp310-pypy310_pp73-manylinux_2_17_x86_64.whl",
    "cryptography-44.0.0-cp37-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    "cryptography-44.0.0-cp39-abi3-manylinux_2_28_x86_64.whl",
    "cryptography-44.0.0-cp311-abi3-manylinux_2_34_x86_64.whl",
    "cryptography-44.0.0-cp314-abi3-manylinux_2_17_x86_64.whl",
    "cryptography-44.0.0-cp31-abi3-manylinux1_x86_64.whl",
    "cryptography-44.0.0-cp32-abi3-manylinux1_x86_64.whl",
    "numpy-2.0.0-cp311-cp311-manylinux_2_99_x86_64.whl",
    "uvloop-0.21.0-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
    "uvloop-0.21.0-cp311-cp311-win_amd64.whl",
    "uvloop-0.21.0-cp311-cp311-macosx_10_9_x86_64.whl",
    "uvloop-0.21.0-cp311-cp311-musllinux_1_2_x86_64.whl",
    "uvloop-0.21.0-cp311-cp311d-manylinux_2_17_x86_64.whl",
    "multi-1.0-cp39.cp310.cp311-abi3.none-manylinux1_x86_64.manylinux2010_x86_64.whl",
    "local-1.0-py3-none-linux_x86_64.whl",
    "local-1.0-cp311-cp311-linux_i686.whl",
    "plain-1.0-1-py3-none-any.whl",
    "plain-1.0-2b-py3-none-any.whl",
    "plain-1.0-cp311-none-any.whl",
    "plain-1.0-py311-none-any.whl",
    "plain-1.0-py30-none-any.whl",
    "plain-1.0-py2-none-any.whl",
    "plain-1.0-py3-none-manylinux_2_5_x86_64.whl",
    "plain-1.0-py3-none-musllinux_1_2_x86_64.whl",
]


def test_wheel_names_parse_as_packaging_parses_them():
    for filename in CORPUS:
        name, version, build, tags = packaging.utils.parse_wheel_filename(filename)
        wheel = iw.parse_wheel_name(filename)
        assert wheel is not None, filename
        assert wheel.name == name and wheel.version == str(version).lower()
        assert wheel.build == (build or (-1, ""))
        assert wheel.tags == {(t.interpreter, t.abi, t.platform) for t in tags}
    for bad in [
        "a-1.0.whl",
        "a-1.0-py3-none.whl",
        "a-1-2-3-4-5-6.whl",
        "a-1.0-py3..x-none-any.whl",
    ]:
        assert iw.parse_wheel_name(bad) is None


@needs_packaging_26_3
@pytest.mark.parametrize("minor", MINORS)
def test_the_chosen_wheel_is_packagings_first_match(minor):
    ranking = reference_tags(minor, [f"cp{minor.replace('.', '')}"])
    order = {tag: index for index, tag in enumerate(ranking)}
    by_project: dict[str, list[str]] = {}
    for filename in CORPUS:
        by_project.setdefault(packaging.utils.parse_wheel_filename(filename)[0], []).append(
            filename
        )
    for project, files in by_project.items():

        def reference_key(filename: str):
            _, _, build, tags = packaging.utils.parse_wheel_filename(filename)
            best = min(order.get((t.interpreter, t.abi, t.platform), len(order)) for t in tags)
            return best, -(build or (-1, ""))[0]  # then the highest build number, as pip does

        fitting = [f for f in files if reference_key(f)[0] < len(order)]
        expected = min(fitting, key=reference_key) if fitting else None
        chosen = iw.best_wheel([iw.parse_wheel_name(f) for f in files], ranking)
        assert (chosen.filename if chosen else None) == expected, (minor, project)


# -- real wheels, installed by the script -------------------------------------------------------


def record_hash(content: bytes) -> str:
    return (
        "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
    )


def make_wheel(
    directory: Path,
    name: str,
    version: str,
    tag: str = "py3-none-any",
    files: Optional[dict[str, bytes]] = None,
    entry_points: str = "",
) -> Path:
    """A wheel built by hand, as a build backend lays it out (paths relative to the zip root)."""
    dist_info = f"{name}-{version}.dist-info"
    members = dict(files or {f"{name}/__init__.py": b"WHEEL = %r\n" % f"{name}-{version}-{tag}"})
    members[f"{dist_info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    )
    members[f"{dist_info}/WHEEL"] = (
        f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: {tag}\n".encode()
    )
    if entry_points:
        members[f"{dist_info}/entry_points.txt"] = entry_points.encode()
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for path, content in members.items():
        writer.writerow([path, record_hash(content), len(content)])
    writer.writerow([f"{dist_info}/RECORD", "", ""])
    members[f"{dist_info}/RECORD"] = record.getvalue().encode()
    path = directory / f"{name}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, content in members.items():
            info = zipfile.ZipInfo(member)
            info.external_attr = (0o755 if member.endswith(".so") else 0o644) << 16
            archive.writestr(info, content)
    return path


def run_installer(python: str, wheels: Path, target: Path, *extra: str, ok: bool = True):
    result = subprocess.run(
        [python, str(SCRIPT), str(wheels), str(target), *extra],
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", "")},
    )
    assert (result.returncode == 0) == ok, result.stderr + result.stdout
    return result


DEMO_FILES = {
    "demo/__init__.py": b"def main():\n    print('demo main ran')\n    return 0\n",
    "demo/_speedups.so": b"\x7fELF not really",
    "demo-1.0.data/purelib/demo_pure.py": b"PURE = 1\n",
    "demo-1.0.data/platlib/demo_plat.py": b"PLAT = 1\n",
    "demo-1.0.data/scripts/demo-tool": b"#!python\nprint('tool ran')\n",
    "demo-1.0.data/scripts/demo-sh": b"#!/bin/sh\necho shell ran\n",
    "demo-1.0.data/data/share/demo/config.txt": b"key = value\n",
    "demo-1.0.data/headers/demo.h": b"int demo(void);\n",
}


@pytest.mark.parametrize("minor", MINORS)
def test_data_dirs_scripts_and_console_scripts_are_installed(minor, tmp_path):
    python = interpreter(minor)
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    wheels.mkdir()
    make_wheel(
        wheels,
        "demo",
        "1.0",
        files=DEMO_FILES,
        entry_points="[console_scripts]\ndemo = demo:main\n",
    )
    (wheels / "requirements.lock").write_text("demo==1.0\n")
    out = run_installer(python, wheels, target).stdout
    assert "installed 1 distributions" in out
    assert (target / "demo" / "__init__.py").is_file()
    assert (target / "demo_pure.py").read_text() == "PURE = 1\n"
    assert (target / "demo_plat.py").read_text() == "PLAT = 1\n"
    assert (target / "share" / "demo" / "config.txt").read_text() == "key = value\n"
    assert (target / "include" / "demo" / "demo.h").is_file()
    assert os.access(target / "demo" / "_speedups.so", os.X_OK)  # the zip's mode bits are kept
    tool = target / "bin" / "demo-tool"
    assert tool.read_bytes().startswith(b"#!" + python.encode() + b"\n")
    assert subprocess.run([str(tool)], capture_output=True, text=True).stdout == "tool ran\n"
    assert (
        subprocess.run([str(target / "bin" / "demo-sh")], capture_output=True, text=True).stdout
        == "shell ran\n"
    )
    launched = subprocess.run([str(target / "bin" / "demo")], capture_output=True, text=True)
    assert (
        launched.stdout == "demo main ran\n" and launched.returncode == 0
    )  # finds demo without PYTHONPATH
    metadata = subprocess.run(
        [
            python,
            "-c",
            "import importlib.metadata as m; d = m.distribution('demo');"
            " print(d.version, len(d.files))",
        ],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(target)},
    )
    assert metadata.stdout.split() == ["1.0", "14"]
    record = (target / "demo-1.0.dist-info" / "RECORD").read_text()
    for row in csv.reader(io.StringIO(record)):
        if row[1]:
            assert record_hash((target / row[0]).read_bytes()) == row[1], row[0]
    assert (target / "demo-1.0.dist-info" / "INSTALLER").read_text() == "rayfine\n"


def test_bin_and_data_dirs_can_be_elsewhere(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    make_wheel(wheels, "demo", "1.0", files=DEMO_FILES)
    target, bin_dir, data = tmp_path / "site", tmp_path / "bin", tmp_path / "prefix"
    run_installer(
        sys.executable, wheels, target, "--bin-dir", str(bin_dir), "--data-dir", str(data)
    )
    assert (bin_dir / "demo-tool").is_file() and (data / "share" / "demo" / "config.txt").is_file()
    assert not (target / "bin").exists() and not (target / "share").exists()


@pytest.mark.parametrize("minor", MINORS)
def test_each_python_gets_the_wheel_packaging_ranks_first(minor, tmp_path):
    python = interpreter(minor)
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    wheels.mkdir()
    tags = [f"cp3{m}-cp3{m}-manylinux_2_17_x86_64.manylinux2014_x86_64" for m in range(9, 14)]
    tags += ["cp38-abi3-manylinux_2_17_x86_64", "cp311-cp311-musllinux_1_1_x86_64", "py3-none-any"]
    tags += ["cp313-cp313t-manylinux_2_17_x86_64", "cp311-cp311-manylinux_2_17_aarch64"]
    for tag in tags:
        make_wheel(wheels, "fast", "1.0", tag)
    (wheels / "requirements.lock").write_text("fast==1.0\n")
    run_installer(python, wheels, target)
    installed = (target / "fast" / "__init__.py").read_text()
    ranking = reference_tags(minor, [f"cp{minor.replace('.', '')}"])
    best = iw.best_wheel([iw.parse_wheel_name(f"fast-1.0-{tag}.whl") for tag in tags], ranking)
    expected = best.filename[: -len(".whl")]
    assert installed == f"WHEEL = {expected!r}\n"
    nodot = minor.replace(".", "")
    assert expected.startswith(f"fast-1.0-cp{nodot}-cp{nodot}-manylinux_2_17_x86_64")


def test_an_optional_pin_without_a_fitting_wheel_is_skipped(tmp_path):
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    wheels.mkdir()
    make_wheel(wheels, "uvloop", "0.21.0", "cp311-cp311-win_amd64")
    h11 = make_wheel(wheels, "h11", "0.16.0")
    digest = hashlib.sha256(h11.read_bytes()).hexdigest()
    (wheels / "requirements.lock").write_text(
        f"h11==0.16.0 --hash=sha256:{'0' * 64} \\\n    --hash=sha256:{digest}\n"
        "uvloop==0.21.0  # speed-up; rayfine: optional\n"
    )
    out = run_installer(sys.executable, wheels, target).stdout
    assert "skipped optional uvloop==0.21.0" in out and "installed 1 distributions" in out
    assert (target / "h11").is_dir() and not (target / "uvloop").exists()


@pytest.mark.parametrize(
    "lock, present",
    [
        ("needed==1.0\n", "cp311-cp311-manylinux_2_17_aarch64"),
        ("needed==2.0\n", "py3-none-any"),
        ("other==1.0\n", "py3-none-any"),
    ],
)
def test_a_required_pin_without_a_fitting_wheel_fails_naming_it(lock, present, tmp_path):
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    wheels.mkdir()
    make_wheel(wheels, "needed", "1.0", present)
    (wheels / "requirements.lock").write_text(lock)
    err = run_installer(sys.executable, wheels, target, ok=False).stderr
    assert lock.strip() in err and "RAYFINE_IMAGE_PYTHONS" in err


def test_a_wheel_not_matching_the_locks_hash_is_refused(tmp_path):
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    wheels.mkdir()
    make_wheel(wheels, "h11", "0.16.0")
    (wheels / "requirements.lock").write_text(f"h11==0.16.0 --hash=sha256:{'0' * 64}\n")
    err = run_installer(sys.executable, wheels, target, ok=False).stderr
    assert "does not match the lock's hashes" in err and not (target / "h11").exists()


def test_without_a_lock_every_project_is_installed(tmp_path):
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    wheels.mkdir()
    make_wheel(wheels, "one", "1.0")
    make_wheel(wheels, "two_words", "2.0")
    run_installer(sys.executable, wheels, target)
    assert (target / "one").is_dir() and (target / "two_words").is_dir()


@pytest.mark.parametrize(
    "member",
    [
        "../evil.py",
        "/tmp/evil.py",
        "demo-1.0.data/data/../../evil.py",
        "demo-1.0.data/scripts/../../../evil",
        "demo-1.0.data/unknown/x.py",
    ],
)
def test_a_member_leaving_its_directory_is_refused(member, tmp_path):
    wheels, target = tmp_path / "wheels", tmp_path / "deep" / "site"
    wheels.mkdir()
    make_wheel(wheels, "demo", "1.0", files={"demo/__init__.py": b"", member: b"owned"})
    err = run_installer(sys.executable, wheels, target, ok=False).stderr
    assert "outside" in err or "unknown .data directory" in err
    assert not list(tmp_path.rglob("evil*")) and not Path("/tmp/evil.py").exists()


def test_lock_lines():
    digest = "ab" * 32
    pins = iw.parse_lock(
        "# comment\n\nFastAPI==0.128.8\nuvloop==0.21.0  # rayfine: optional\n"
        f"typing_extensions==4.16.0 --hash=sha256:{digest} \\\n    --hash=sha256:{digest.upper()}\n"
    )
    assert pins == [
        iw.Pin("fastapi", "0.128.8", False),
        iw.Pin("uvloop", "0.21.0", True),
        iw.Pin("typing-extensions", "4.16.0", False, (digest, digest)),
    ]
    for bad in [
        "fastapi>=0.1\n",
        "fastapi\n",
        "fastapi==1.0; python_version<'3.10'\n",
        "fastapi==1.0 --hash=md5:00\n",
        "-r other.txt\n",
    ]:
        with pytest.raises(ValueError, match="name==version"):
            iw.parse_lock(bad)


# -- the host side: fetching the wheels (rayfine_core.wheelhouse), from a loopback index ---------

import http.server  # noqa: E402
import threading  # noqa: E402
import urllib.parse  # noqa: E402

from rayfine_core.build import wheelhouse  # noqa: E402
from rayfine_core.errors import ImageBuildError  # noqa: E402


class Index(http.server.ThreadingHTTPServer):
    """A package index on 127.0.0.1: PEP 691 JSON for projects in ``json_projects``, else
    PEP 503 HTML; files under /files/; optional Basic auth; ``corrupt`` files served altered."""

    def __init__(self, root: Path, json_projects=(), credentials=None, corrupt=()):
        super().__init__(("127.0.0.1", 0), IndexHandler)
        self.root, self.json_projects, self.corrupt = root, set(json_projects), set(corrupt)
        self.credentials = credentials
        self.hits: list[str] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}/simple/"


class IndexHandler(http.server.BaseHTTPRequestHandler):
    server: Index

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self.server.hits.append(self.path)
        if self.server.credentials:
            expected = base64.b64encode(self.server.credentials.encode()).decode()
            if self.headers.get("authorization") != f"Basic {expected}":
                return self.answer(401, b"login", "text/plain")
        parts = [urllib.parse.unquote(p) for p in self.path.split("/") if p]
        if len(parts) == 2 and parts[0] == "files" and (self.server.root / parts[1]).is_file():
            content = (self.server.root / parts[1]).read_bytes()
            return self.answer(200, content + b"x" if parts[1] in self.server.corrupt else content)
        if len(parts) == 2 and parts[0] == "simple":
            files = [
                p
                for p in sorted(self.server.root.iterdir())
                if iw.parse_wheel_name(p.name) and iw.parse_wheel_name(p.name).name == parts[1]
            ]
            if files:
                return self.listing(parts[1], files)
        self.answer(404, b"not found", "text/plain")

    def listing(self, project: str, files: list[Path]) -> None:
        digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
        if project in self.server.json_projects and "json" in self.headers.get("accept", ""):
            body = {
                "meta": {"api-version": "1.0"},
                "name": project,
                "files": [
                    {"filename": n, "url": f"/files/{n}", "hashes": {"sha256": d}}
                    for n, d in digests.items()
                ],
            }
            return self.answer(
                200, json.dumps(body).encode(), "application/vnd.pypi.simple.v1+json"
            )
        links = "".join(
            f'<a href="../../files/{n}#sha256={d}">{n}</a>\n' for n, d in digests.items()
        )
        self.answer(200, f"<html><body>{links}</body></html>".encode(), "text/html")

    def answer(self, status: int, body: bytes, kind: str = "application/octet-stream") -> None:
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def serve():
    servers: list[Index] = []

    def start(root: Path, **options) -> Index:
        server = Index(root, **options)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


LOCK = "h11==0.16.0\nfast==1.0\nuvloop==0.21.0  # a speed-up; rayfine: optional\n"
FAST_TAGS = [f"cp3{m}-cp3{m}-manylinux_2_17_x86_64.manylinux2014_x86_64" for m in range(9, 14)]
FAST_TAGS += [f"cp3{m}-cp3{m}-musllinux_1_1_x86_64" for m in range(9, 14)]
UNWANTED = [
    "fast-1.0-cp311-cp311-linux_x86_64.whl",  # fits only the machine that built it
    "fast-1.0-cp311-cp311-manylinux_2_17_aarch64.whl",
    "fast-1.0-cp311-cp311-win_amd64.whl",
    "fast-1.0-cp38-cp38-manylinux_2_17_x86_64.whl",
    "h11-0.15.0-py3-none-any.whl",
    "uvloop-0.21.0-cp311-cp311-win_amd64.whl",
]


@pytest.fixture
def wheel_store(tmp_path) -> Path:
    store = tmp_path / "store"
    store.mkdir()
    make_wheel(store, "h11", "0.16.0")
    for tag in FAST_TAGS:
        make_wheel(store, "fast", "1.0", tag)
    for filename in UNWANTED:
        name, version, tag = filename[: -len(".whl")].split("-", 2)
        make_wheel(store, name, version, tag)
    return store


@pytest.fixture
def host(monkeypatch, tmp_path):
    """No pip/uv settings of this machine leak in; the lock is LOCK; a fresh cache."""
    for name in list(os.environ):
        proxy = name.lower() in ("http_proxy", "https_proxy", "all_proxy")  # loopback only
        if name.startswith(("PIP_", "UV_", "RAYFINE_")) or proxy or name == "REQUESTS_CA_BUNDLE":
            monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("RAYFINE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc, no user pip.conf
    monkeypatch.setattr(wheelhouse, "http_app_lock", lambda: LOCK)
    if platform_machine() != "x86_64":
        pytest.skip("the wheel store is built for x86_64")
    return monkeypatch


def platform_machine() -> str:
    import platform

    return platform.machine().lower()


def fetched(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir() if p.suffix == ".whl"}


EXPECTED = {"h11-0.16.0-py3-none-any.whl"} | {f"fast-1.0-{tag}.whl" for tag in FAST_TAGS}


def test_the_host_fetches_each_fitting_wheel_once_and_the_image_installs_them(
    host, serve, wheel_store, tmp_path
):
    index = serve(wheel_store, json_projects={"fast"})
    host.setenv("RAYFINE_INDEX_URL", index.url)
    said: list[str] = []
    directory = wheelhouse.ensure_wheels(said.append)
    assert fetched(directory) == EXPECTED
    assert (directory / "requirements.lock").read_text() == LOCK
    assert any("uvloop==0.21.0" in line and "optional" in line for line in said)
    hits = len(index.hits)
    assert wheelhouse.ensure_wheels() == directory and len(index.hits) == hits  # cached
    target = tmp_path / "site"
    out = run_installer(sys.executable, directory, target).stdout
    assert "skipped optional uvloop==0.21.0" in out
    assert (target / "h11").is_dir() and (target / "fast").is_dir()


def test_two_builds_at_once_download_once(host, serve, wheel_store):
    index = serve(wheel_store)
    host.setenv("RAYFINE_INDEX_URL", index.url)
    with concurrent_pool() as pool:
        directories = list(pool.map(lambda _: wheelhouse.ensure_wheels(), range(4)))
    assert len(set(directories)) == 1 and fetched(directories[0]) == EXPECTED
    downloads = [hit for hit in index.hits if hit.startswith("/files/")]
    assert len(downloads) == len(set(downloads)) == len(EXPECTED)


def concurrent_pool():
    import concurrent.futures

    return concurrent.futures.ThreadPoolExecutor(4)


@pytest.mark.parametrize(
    "setting", ["PIP_INDEX_URL", "UV_DEFAULT_INDEX", "UV_INDEX_URL", "pip.conf", "extra"]
)
def test_pip_and_uv_settings_choose_the_index(setting, host, serve, wheel_store, tmp_path):
    index = serve(wheel_store)
    if setting == "pip.conf":
        conf = tmp_path / "pip.conf"
        conf.write_text(f"[global]\nindex-url = {index.url}\ntimeout = 30\n")
        host.setenv("PIP_CONFIG_FILE", str(conf))
    elif setting == "extra":  # the primary index lacks them: an extra one has them
        empty = tmp_path / "empty"
        empty.mkdir()
        host.setenv("PIP_INDEX_URL", serve(empty).url)
        host.setenv("PIP_EXTRA_INDEX_URL", index.url)
    else:
        host.setenv(setting, index.url)
    assert fetched(wheelhouse.ensure_wheels()) == EXPECTED


@pytest.mark.parametrize("how", ["env", "pip.conf", "file index"])
def test_offline_from_local_wheels(how, host, wheel_store, tmp_path):
    if how == "env":
        host.setenv("PIP_NO_INDEX", "1")
        host.setenv("PIP_FIND_LINKS", str(wheel_store))
    elif how == "pip.conf":
        conf = tmp_path / "pip.conf"
        conf.write_text(f"[global]\nno-index = true\nfind-links = {wheel_store}\n")
        host.setenv("PIP_CONFIG_FILE", str(conf))
    else:  # a PEP 503 tree on disk, like a mirror: file:///…/simple/<project>/index.html
        simple = tmp_path / "mirror" / "simple"
        for project in ("h11", "fast", "uvloop"):
            links = "".join(
                f'<a href="{p.as_uri()}#sha256={hashlib.sha256(p.read_bytes()).hexdigest()}">x</a>'
                for p in wheel_store.glob(f"{project}-*.whl")
            )
            (simple / project).mkdir(parents=True)
            (simple / project / "index.html").write_text(links)
        host.setenv("RAYFINE_INDEX_URL", simple.as_uri())
    assert fetched(wheelhouse.ensure_wheels()) == EXPECTED


def test_credentials_are_sent_once_and_never_shown(host, serve, wheel_store):
    index = serve(wheel_store, json_projects={"h11"}, credentials="robot:s3cret-token")
    with_credentials = index.url.replace("http://", "http://robot:s3cret-token@")
    host.setenv("RAYFINE_INDEX_URL", with_credentials)
    assert fetched(wheelhouse.ensure_wheels()) == EXPECTED
    host.setattr(wheelhouse, "http_app_lock", lambda: "absent==1.0\n")
    with pytest.raises(ImageBuildError) as caught:
        wheelhouse.ensure_wheels()
    assert "absent==1.0" in str(caught.value) and "RAYFINE_FIND_LINKS" in str(caught.value)
    assert "s3cret" not in str(caught.value) and "***@127.0.0.1" in str(caught.value)


def test_a_tampered_download_is_refused_and_nothing_is_cached(host, serve, wheel_store):
    name = "h11-0.16.0-py3-none-any.whl"
    host.setenv("RAYFINE_INDEX_URL", serve(wheel_store, corrupt={name}).url)
    with pytest.raises(ImageBuildError, match="tampered"):
        wheelhouse.ensure_wheels()
    assert not wheelhouse.wheels_dir().exists()
    assert not list((wheelhouse.cache_dir() / "wheels").glob("staging-*"))


def test_the_locks_hashes_are_checked_on_the_host_too(host, serve, wheel_store):
    host.setenv("RAYFINE_INDEX_URL", serve(wheel_store).url)
    host.setattr(wheelhouse, "http_app_lock", lambda: f"h11==0.16.0 --hash=sha256:{'1' * 64}\n")
    with pytest.raises(ImageBuildError, match="tampered"):
        wheelhouse.ensure_wheels()


def test_an_unreachable_index_is_a_clear_error(host):
    host.setenv("RAYFINE_INDEX_URL", "http://127.0.0.1:9/simple/")  # discard port: refused
    with pytest.raises(ImageBuildError) as caught:
        wheelhouse.ensure_wheels()
    message = str(caught.value)
    assert "h11==0.16.0" in message and "127.0.0.1:9" in message and "RAYFINE_FIND_LINKS" in message
