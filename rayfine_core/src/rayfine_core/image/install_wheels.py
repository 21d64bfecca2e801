"""Install the server's wheels into a directory, inside the image, offline.

Usage: python3 install_wheels.py WHEEL_DIR TARGET_DIR [--bin-dir DIR] [--data-dir DIR]

The host downloaded the pinned wheels for several Pythons and both libcs,
and wrote the pins to ``WHEEL_DIR/requirements.lock`` (``name==version``
lines; ``# rayfine: optional`` marks a pin that may be skipped when no wheel
fits, such as a speed-up).  This script picks, per pin, the wheel this
interpreter ranks best, by the rules and order of ``packaging.tags.sys_tags()``
(packaging >= 26.3), and installs it like ``pip install --target``:
``.data/purelib`` and ``.data/platlib`` into TARGET_DIR, ``.data/scripts`` and
console scripts into the bin dir (default TARGET_DIR/bin), ``.data/data``
into the data dir (default TARGET_DIR), ``.data/headers`` into
DATA_DIR/include/NAME.  It needs no pip, no venv and no network: it runs on
any python3 from 3.9 on, with the standard library only.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import os
import platform
import re
import stat
import struct
import subprocess
import sys
import sysconfig
import zipfile
from importlib.machinery import EXTENSION_SUFFIXES
from typing import Iterable, List, NamedTuple, Optional, Sequence, Tuple

LOCK_NAME = "requirements.lock"
Tag = Tuple[str, str, str]

# -- the interpreter's tags, in packaging.tags.sys_tags() order ------------------------------


def sys_tags() -> List[Tag]:
    """Every (interpreter, abi, platform) this interpreter accepts, best first."""
    name = _interpreter_name()
    platforms = platform_tags()
    if name == "cp":
        tags = cpython_tags(sys.version_info[:2], _cpython_abis(sys.version_info[:2]), platforms)
        interpreter: Optional[str] = "cp" + _interpreter_version()
    else:
        tags = generic_tags(name + _interpreter_version(), _generic_abis(), platforms)
        interpreter = "pp3" if name == "pp" else None
    return tags + compatible_tags(sys.version_info[:2], interpreter, platforms)


def cpython_tags(
    version: Sequence[int], abis: Sequence[str], platforms: Sequence[str]
) -> List[Tag]:
    """CPython's own tags: its ABIs, then the stable ABI (abi3, or abi3t when free-threaded),
    ``none``, and the stable ABI of every older minor version down to 3.2."""
    interpreter = f"cp{version[0]}{version[1]}"
    threaded = _is_threaded(abis)
    stable = "abi3t" if threaded else "abi3"
    explicit = ("abi3", "abi3t", "none") if threaded else ("abi3", "none")
    specific = [abi for abi in abis if abi not in explicit]
    tags = [(interpreter, abi, plat) for abi in specific for plat in platforms]
    stable_applies = tuple(version) >= (3, 2)
    if stable_applies:
        tags += [(interpreter, stable, plat) for plat in platforms]
    tags += [(interpreter, "none", plat) for plat in platforms]
    if stable_applies:
        for minor in range(version[1] - 1, 1, -1):
            tags += [(f"cp{version[0]}{minor}", stable, plat) for plat in platforms]
    return tags


def generic_tags(interpreter: str, abis: Sequence[str], platforms: Sequence[str]) -> List[Tag]:
    abis = list(abis) + ([] if "none" in abis else ["none"])
    return [(interpreter, abi, plat) for abi in abis for plat in platforms]


def compatible_tags(
    version: Sequence[int], interpreter: Optional[str], platforms: Sequence[str]
) -> List[Tag]:
    """Pure-Python tags: ``py3X-none-<platform>``, ``<interpreter>-none-any``, ``py3X-none-any``."""
    pythons = [f"py{version[0]}{version[1]}", f"py{version[0]}"]
    pythons += [f"py{version[0]}{minor}" for minor in range(version[1] - 1, -1, -1)]
    tags = [(python, "none", plat) for python in pythons for plat in platforms]
    if interpreter:
        tags.append((interpreter, "none", "any"))
    return tags + [(python, "none", "any") for python in pythons]


def _interpreter_name() -> str:
    name = sys.implementation.name
    return {"python": "py", "cpython": "cp", "pypy": "pp", "ironpython": "ip", "jython": "jy"}.get(
        name, name
    )


def _interpreter_version() -> str:
    version = sysconfig.get_config_var("py_version_nodot")
    return str(version) if version else "{}{}".format(*sys.version_info[:2])


def _cpython_abis(version: Sequence[int]) -> List[str]:
    nodot = f"{version[0]}{version[1]}"
    debug_var = sysconfig.get_config_var("Py_DEBUG")
    debug_ext = hasattr(sys, "gettotalrefcount") or "_d.pyd" in EXTENSION_SUFFIXES
    debug = "d" if debug_var or (debug_var is None and debug_ext) else ""
    threaded = (
        "t" if tuple(version) >= (3, 13) and sysconfig.get_config_var("Py_GIL_DISABLED") else ""
    )
    abis = ["cp" + nodot + threaded + debug]
    if debug:  # a debug build also loads ordinary extension modules
        abis.append("cp" + nodot + threaded)
    return abis


def _generic_abis() -> List[str]:
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    if not isinstance(suffix, str) or not suffix.startswith("."):
        raise SystemError("invalid sysconfig.get_config_var('EXT_SUFFIX')")
    parts = suffix.split(".")
    if len(parts) < 3:
        return _cpython_abis(sys.version_info[:2])
    soabi = parts[1]
    if soabi.startswith("cpython"):
        abi = "cp" + soabi.split("-")[1]
    elif soabi.startswith("cp"):
        abi = soabi.split("-")[0]
    elif soabi.startswith("pypy"):
        abi = "-".join(soabi.split("-")[:2])
    elif soabi.startswith("graalpy"):
        abi = "-".join(soabi.split("-")[:3])
    elif soabi:
        abi = soabi
    else:
        return []
    return [_normalize(abi)]


def _is_threaded(abis: Sequence[str]) -> bool:
    for abi in abis:  # the first version-specific ABI decides
        if abi == "abi3t":
            return True
        match = re.match(r"cp\d+(.*)", abi)
        if match:
            return "t" in match.group(1)
    return False


def _normalize(text: str) -> str:
    return text.replace(".", "_").replace("-", "_").replace(" ", "_")


# -- platforms -------------------------------------------------------------------------------

_MANYLINUX_ARCHS = {"x86_64", "aarch64", "ppc64", "ppc64le", "s390x", "loongarch64", "riscv64"}
_LEGACY_MANYLINUX = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}


def platform_tags() -> List[str]:
    """This machine's platform tags; on Linux: linux_*, then manylinux_*, then musllinux_*."""
    plat = _normalize(sysconfig.get_platform())
    if platform.system() != "Linux" or not plat.startswith("linux_"):
        return [plat]
    if struct.calcsize("P") == 4:  # a 32-bit interpreter on a 64-bit kernel
        plat = {"linux_x86_64": "linux_i686", "linux_aarch64": "linux_armv8l"}.get(plat, plat)
    arch = plat.split("_", 1)[1]
    archs = ["armv8l", "armv7l"] if arch == "armv8l" else [arch]
    glibc = _glibc_version() if _manylinux_abi_fits(archs) else None
    return linux_platforms(archs, glibc, _musl_version(sys.executable), _manylinux_allows)


def linux_platforms(archs, glibc, musl, allows=None) -> List[str]:
    """Platform tags of a Linux machine with these archs, glibc and musl versions.

    :param glibc: ``(major, minor)``, or None when Python is not linked to glibc.
    :param musl: ``(major, minor)``, or None when Python is not linked to musl.
    :param allows: ``allows(arch, (major, minor))`` vetoes manylinux levels (PEP 600's
        ``_manylinux`` module); None allows all up to ``glibc``.
    """
    tags = ["linux_" + arch for arch in archs]
    if glibc is not None and glibc[0] == 2:  # glibc 3 would add its own levels, PEP 600
        oldest = 5 if set(archs) & {"x86_64", "i686"} else 17
        for arch in archs:
            for minor in range(glibc[1], oldest - 1, -1):
                if allows is None or allows(arch, (2, minor)):
                    tags.append(f"manylinux_2_{minor}_{arch}")
                    if (2, minor) in _LEGACY_MANYLINUX:
                        tags.append(f"{_LEGACY_MANYLINUX[(2, minor)]}_{arch}")
    if musl is not None:
        for arch in archs:
            tags += [f"musllinux_{musl[0]}_{minor}_{arch}" for minor in range(musl[1], -1, -1)]
    return tags


def _glibc_version() -> Optional[Tuple[int, int]]:
    try:
        text = os.confstr("CS_GNU_LIBC_VERSION") or ""
        text = text.rsplit(None, 1)[1]
    except (AttributeError, OSError, ValueError, IndexError):
        text = _glibc_version_ctypes() or ""
    match = re.match(r"([0-9]+)\.([0-9]+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _glibc_version_ctypes() -> Optional[str]:
    try:
        import ctypes

        function = ctypes.CDLL(None).gnu_get_libc_version
    except (ImportError, OSError, AttributeError):
        return None
    function.restype = ctypes.c_char_p
    version = function()
    return version.decode("ascii") if isinstance(version, bytes) else version


def _manylinux_allows(arch: str, version: Tuple[int, int]) -> bool:
    try:
        import _manylinux  # type: ignore[import-not-found]  # distributors' veto, PEP 600
    except ImportError:
        return True
    if hasattr(_manylinux, "manylinux_compatible"):
        result = _manylinux.manylinux_compatible(version[0], version[1], arch)
        return True if result is None else bool(result)
    legacy = {(2, 5): "manylinux1", (2, 12): "manylinux2010", (2, 17): "manylinux2014"}.get(version)
    if legacy and hasattr(_manylinux, legacy + "_compatible"):
        return bool(getattr(_manylinux, legacy + "_compatible"))
    return True


def _manylinux_abi_fits(archs: Sequence[str]) -> bool:
    if "armv7l" in archs:  # 32-bit little-endian ARM, EABI 5, hard float
        elf = _read_elf(sys.executable)
        return (
            elf is not None
            and elf.bits == 32
            and elf.little
            and elf.machine == 40
            and elf.flags & 0xFF000000 == 0x05000000
            and elf.flags & 0x400 == 0x400
        )
    if "i686" in archs:
        elf = _read_elf(sys.executable)
        return elf is not None and elf.bits == 32 and elf.little and elf.machine == 3
    return any(arch in _MANYLINUX_ARCHS for arch in archs)


def _musl_version(executable: str) -> Optional[Tuple[int, int]]:
    """musl's version, from the dynamic loader named in the interpreter's ELF header."""
    elf = _read_elf(executable)
    if elf is None or elf.interpreter is None or "musl" not in elf.interpreter:
        return None
    try:
        output = subprocess.run(
            [elf.interpreter], stderr=subprocess.PIPE, text=True, check=False
        ).stderr
    except OSError:
        return None
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    match = re.match(r"Version (\d+)\.(\d+)", lines[1]) if len(lines) > 1 else None
    if not lines or not lines[0].startswith("musl") or match is None:
        return None
    return int(match.group(1)), int(match.group(2))


class _Elf(NamedTuple):
    bits: int
    little: bool
    machine: int
    flags: int
    interpreter: Optional[str]


def _read_elf(path: str) -> Optional[_Elf]:
    """The few ELF header fields the platform checks need, or None if ``path`` is no ELF file."""
    try:
        with open(path, "rb") as file:
            data = file.read(1 << 20)
    except OSError:
        return None
    if len(data) < 64 or data[:4] != b"\x7fELF" or data[4] not in (1, 2) or data[5] not in (1, 2):
        return None
    bits, order = (32 if data[4] == 1 else 64), ("<" if data[5] == 1 else ">")
    head = "HHIIIIIHHHHHH" if bits == 32 else "HHIQQQIHHHHHH"
    try:
        fields = struct.unpack_from(order + head, data, 16)
        machine, phoff, flags, phentsize, phnum = (
            fields[1],
            fields[4],
            fields[6],
            fields[8],
            fields[9],
        )
        interpreter = None
        for index in range(phnum):
            at = phoff + index * phentsize
            if bits == 32:
                kind, offset, _, _, size = struct.unpack_from(order + "IIIII", data, at)
            else:
                kind, _, offset, _, _, size = struct.unpack_from(order + "IIQQQQ", data, at)
            if kind == 3:  # PT_INTERP
                interpreter = data[offset : offset + size].split(b"\0")[0].decode()
    except (struct.error, UnicodeDecodeError):
        return None
    return _Elf(bits, order == "<", machine, flags, interpreter)


# -- wheel names and the lock ------------------------------------------------------------------


class Pin(NamedTuple):
    name: str  # normalised: lower case, runs of -_. as one -
    version: str
    optional: bool
    hashes: Tuple[str, ...] = ()  # sha256 hex digests a wheel must match, if the lock has any


class Wheel(NamedTuple):
    filename: str
    name: str
    version: str
    build: Tuple[int, str]
    tags: frozenset


def normalize_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_wheel_name(filename: str) -> Optional[Wheel]:
    """Name, version, build tag and the expanded tag set of a wheel file, or None if malformed."""
    if not filename.endswith(".whl"):
        return None
    parts = filename[:-4].split("-")
    if len(parts) not in (5, 6) or not all(parts):
        return None
    build: Tuple[int, str] = (-1, "")
    if len(parts) == 6:
        match = re.match(r"(\d+)(.*)$", parts[2])
        if match is None:
            return None
        build = (int(match.group(1)), match.group(2))
    pythons, abis, platforms = (part.lower().split(".") for part in parts[-3:])
    if "" in pythons + abis + platforms:
        return None
    tags = frozenset((p, a, pl) for p in pythons for a in abis for pl in platforms)
    return Wheel(filename, normalize_name(parts[0]), parts[1].lower(), build, tags)


_PIN = re.compile(
    r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([A-Za-z0-9][A-Za-z0-9.+!_-]*)"
    r"((?:\s+--hash[=\s]sha256:[0-9a-fA-F]{64})*)\s*"
)


def parse_lock(text: str) -> List[Pin]:
    """The exact pins of a lock file (pip's hash-checking format is read too).

    ``# rayfine: optional`` after a pin marks it optional.  Markers, ranges and
    other options are refused: the lock must say exactly what gets installed.
    """
    pins = []
    for number, raw in enumerate(text.replace("\\\n", " ").splitlines(), 1):
        line, _, comment = raw.partition("#")
        if not line.strip():
            continue
        match = _PIN.fullmatch(line)
        if match is None:
            raise ValueError(
                f"lock line {number} is not `name==version [--hash=sha256:...]`: {raw!r}"
            )
        hashes = tuple(h.lower() for h in re.findall(r"sha256:([0-9a-fA-F]{64})", match.group(3)))
        optional = re.search(r"\brayfine:\s*optional\b", comment) is not None
        pins.append(Pin(normalize_name(match.group(1)), match.group(2).lower(), optional, hashes))
    return pins


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def best_wheel(wheels: Iterable[Wheel], ranking: Sequence[Tag]) -> Optional[Wheel]:
    """The wheel whose best tag ranks first (then the highest build number), as pip picks."""
    rank = {tag: index for index, tag in enumerate(reversed(ranking))}
    scored = [
        (max(rank.get(tag, -1) for tag in wheel.tags), wheel.build, wheel) for wheel in wheels
    ]
    scored = [entry for entry in scored if entry[0] >= 0]
    return (
        max(scored, key=lambda entry: (entry[0], entry[1], entry[2].filename))[2]
        if scored
        else None
    )


# -- installing one wheel ---------------------------------------------------------------------


def install_wheel(path: str, target: str, bin_dir: str, data_dir: str) -> List[str]:
    """Unpack the wheel at ``path``; returns the files written.  Refuses paths leaving their dir."""
    wheel = parse_wheel_name(os.path.basename(path))
    if wheel is None:
        raise ValueError(f"not a wheel file name: {os.path.basename(path)}")
    written: List[Tuple[str, str, int]] = []
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        dist_info = _single_dir(names, ".dist-info", wheel)
        data_prefix = dist_info[: -len(".dist-info")] + ".data/"
        _check_wheel_version(archive.read(dist_info + "/WHEEL").decode("utf-8"))
        for info in archive.infolist():
            if info.is_dir() or info.filename in (dist_info + "/RECORD", dist_info + "/INSTALLER"):
                continue
            base, relative, script = target, info.filename, False
            if info.filename.startswith(data_prefix):
                key, _, relative = info.filename[len(data_prefix) :].partition("/")
                base, script = (
                    _data_base(key, target, bin_dir, data_dir, wheel.name),
                    key == "scripts",
                )
            content = archive.read(info)
            if script and re.match(rb"#!pythonw?(\r?\n|$)", content):  # the wheel spec's marker
                first_line_end = content.find(b"\n")
                rest = content[first_line_end:] if first_line_end >= 0 else b"\n"
                content = b"#!" + sys.executable.encode() + rest
            executable = script or bool((info.external_attr >> 16) & 0o111)
            written.append(_write(base, relative, content, executable))
        entry_points = dist_info + "/entry_points.txt"
        if entry_points in names:
            for name, spec in _console_scripts(archive.read(entry_points).decode("utf-8")):
                written.append(_write(bin_dir, name, _launcher(spec, target), True))
    _write_record(target, dist_info, written)
    return [path for path, _, _ in written]


def _single_dir(names: Sequence[str], suffix: str, wheel: Wheel) -> str:
    tops = {name.split("/", 1)[0] for name in names if "/" in name}
    found = [
        top
        for top in tops
        if top.endswith(suffix)
        and normalize_name(top[: -len(suffix)].rsplit("-", 1)[0]) == wheel.name
    ]
    if len(found) != 1:
        raise ValueError(f"{wheel.filename} has {len(found)} {suffix} directories for {wheel.name}")
    return found[0]


def _check_wheel_version(metadata: str) -> None:
    match = re.search(r"^Wheel-Version:\s*(\d+)\.", metadata, re.MULTILINE)
    if match is None or match.group(1) != "1":
        raise ValueError("unsupported Wheel-Version (this installer reads 1.x)")


def _data_base(key: str, target: str, bin_dir: str, data_dir: str, name: str) -> str:
    bases = {"purelib": target, "platlib": target, "scripts": bin_dir, "data": data_dir}
    if key == "headers":
        return os.path.join(data_dir, "include", name)
    if key not in bases:
        raise ValueError(
            f"unknown .data directory {key!r} (expected purelib, platlib, scripts, headers, data)"
        )
    return bases[key]


def _write(base: str, relative: str, content: bytes, executable: bool) -> Tuple[str, str, int]:
    parts = relative.replace("\\", "/").split("/")
    if (
        relative.startswith("/")
        or re.match(r"[A-Za-z]:", relative)
        or ".." in parts
        or not relative
    ):
        raise ValueError(f"wheel member {relative!r} would be written outside {base}")
    path = os.path.join(base, *[part for part in parts if part not in ("", ".")])
    root = os.path.realpath(base)
    if os.path.commonpath([root, os.path.realpath(os.path.dirname(path))]) != root:
        raise ValueError(f"wheel member {relative!r} would be written outside {base}")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as file:
        file.write(content)
    if executable:
        mode = os.stat(path).st_mode
        os.chmod(path, mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    digest = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
    return path, "sha256=" + digest, len(content)


def _console_scripts(text: str) -> List[Tuple[str, str]]:
    scripts, section = [], ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
        elif section == "console_scripts" and "=" in line and not line.startswith(("#", ";")):
            name, _, spec = line.partition("=")
            if re.match(r"^[A-Za-z0-9_.-]+$", name.strip()):
                scripts.append((name.strip(), spec.split("[", 1)[0].strip()))
    return scripts


def _launcher(spec: str, target: str) -> bytes:
    module, _, attribute = spec.partition(":")
    if not re.match(r"^[\w.]+$", module) or not re.match(r"^[\w.]*$", attribute):
        raise ValueError(f"bad console script entry point {spec!r}")
    call = f"_entry.{attribute}" if attribute else "_entry"
    return (
        f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {target!r})\n"
        f"import {module} as _entry\nif __name__ == '__main__':\n    sys.exit({call}())\n"
    ).encode()


def _write_record(target: str, dist_info: str, written: List[Tuple[str, str, int]]) -> None:
    record_dir = os.path.join(target, dist_info)
    with open(os.path.join(record_dir, "INSTALLER"), "w") as file:
        file.write("rayfine\n")
    rows = [(os.path.relpath(path, target), digest, str(size)) for path, digest, size in written]
    rows.append((os.path.join(dist_info, "INSTALLER"), "", ""))
    rows.append((os.path.join(dist_info, "RECORD"), "", ""))
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    with open(os.path.join(record_dir, "RECORD"), "w") as file:
        file.write(out.getvalue())


# -- the whole directory ----------------------------------------------------------------------


def choose(wheel_dir: str, ranking: Sequence[Tag]) -> Tuple[List[str], List[Pin], List[Pin]]:
    """Files to install, required pins without a fitting wheel, optional pins skipped.

    Without a lock file, every project in the directory is required, at any version.
    """
    wheels = [w for w in map(parse_wheel_name, sorted(os.listdir(wheel_dir))) if w is not None]
    lock = os.path.join(wheel_dir, LOCK_NAME)
    if os.path.exists(lock):
        with open(lock) as file:
            pins = parse_lock(file.read())
    else:
        pins = [Pin(name, "", False) for name in sorted({w.name for w in wheels})]
    chosen: List[str] = []
    missing: List[Pin] = []
    skipped: List[Pin] = []
    for pin in pins:
        version = pin.version.replace("-", "_")
        candidates = [w for w in wheels if w.name == pin.name and version in ("", w.version)]
        best = best_wheel(candidates, ranking)
        if best is None:
            (skipped if pin.optional else missing).append(pin)
            continue
        if pin.hashes and sha256_of(os.path.join(wheel_dir, best.filename)) not in pin.hashes:
            raise ValueError(f"{best.filename} does not match the lock's hashes for {pin.name}")
        chosen.append(best.filename)
    return chosen, missing, skipped


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheel_dir")
    parser.add_argument("target")
    parser.add_argument("--bin-dir", help="scripts go here (default TARGET/bin)")
    parser.add_argument("--data-dir", help=".data/data goes here (default TARGET)")
    args = parser.parse_args(argv)
    target = os.path.abspath(args.target)
    bin_dir = os.path.abspath(args.bin_dir or os.path.join(target, "bin"))
    data_dir = os.path.abspath(args.data_dir or target)
    ranking = sys_tags()
    try:
        chosen, missing, skipped = choose(args.wheel_dir, ranking)
        if missing:
            pins = ", ".join(f"{pin.name}=={pin.version}" for pin in missing)
            best = "-".join(ranking[0]) if ranking else "none"
            sys.exit(
                f"rayfine: no wheel of {pins} fits Python {platform.python_version()} on"
                f" {platform.machine()} (its best tag: {best}). Set RAYFINE_IMAGE_PYTHONS to"
                " include this version, or use a base image with a supported Python."
            )
        os.makedirs(target, exist_ok=True)
        for filename in chosen:
            install_wheel(os.path.join(args.wheel_dir, filename), target, bin_dir, data_dir)
    except (ValueError, zipfile.BadZipFile) as exc:  # a bad lock or wheel: say which, no traceback
        sys.exit(f"rayfine: cannot install the server's wheels: {exc}")
    for pin in skipped:
        print(f"rayfine: skipped optional {pin.name}=={pin.version}: no wheel fits this Python")
    print(
        f"rayfine: installed {len(chosen)} distributions"
        f" for Python {platform.python_version()} into {target}"
    )


if __name__ == "__main__":
    main()
