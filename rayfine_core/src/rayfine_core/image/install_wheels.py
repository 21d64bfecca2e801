"""Install the server's wheels into a directory, inside the image, offline.

Usage: python3 install_wheels.py WHEEL_DIR TARGET_DIR

The host downloaded the pinned wheels for several Pythons and both libcs;
this script picks, per distribution, the one wheel this interpreter can use
and unpacks it (a wheel is a zip laid out for site-packages).  It needs no
pip, no venv and no network, so any base image with a python3 works.
"""

import os
import platform
import re
import sys
import zipfile


def interpreter_tags():
    major, minor = sys.version_info[:2]
    machine = platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    libc, libc_version = platform.libc_ver()
    pythons = {"py3", "py%d" % major, "py%d%d" % (major, minor), "cp%d%d" % (major, minor)}
    abis = {"none", "abi3", "cp%d%d" % (major, minor)}
    return pythons, abis, machine, libc, libc_version


_LEGACY_MANYLINUX = {"manylinux1": "2_5", "manylinux2010": "2_12", "manylinux2014": "2_17"}


def platform_ok(tag, machine, libc, libc_version):
    if tag in ("any", "linux_" + machine):
        return True
    for legacy, glibc in _LEGACY_MANYLINUX.items():
        if tag == legacy + "_" + machine:
            tag = "manylinux_%s_%s" % (glibc, machine)
    m = re.match(r"(manylinux|musllinux)_(\d+)_(\d+)_(.+)$", tag)
    if not m or m.group(4) != machine:
        return False
    if m.group(1) == "musllinux":
        return libc != "glibc"
    return libc == "glibc" and _version(libc_version) >= (int(m.group(2)), int(m.group(3)))


def _version(text):
    parts = [int(p) for p in re.findall(r"\d+", text or "0")[:2]]
    return tuple(parts + [0] * (2 - len(parts)))


def compatible(filename, tags):
    pythons, abis, machine, libc, libc_version = tags
    name, version, py, abi, plat = filename[: -len(".whl")].split("-")[-5:]
    return (
        any(p in pythons for p in py.split("."))
        and any(a in abis for a in abi.split("."))
        and any(platform_ok(p, machine, libc, libc_version) for p in plat.split("."))
    )


def main(wheel_dir, target):
    tags = interpreter_tags()
    by_project = {}
    for filename in sorted(os.listdir(wheel_dir)):
        if filename.endswith(".whl"):
            by_project.setdefault(filename.split("-")[0].lower(), []).append(filename)
    os.makedirs(target, exist_ok=True)
    missing = []
    for project, files in sorted(by_project.items()):
        usable = [f for f in files if compatible(f, tags)]
        if not usable:
            missing.append(project)
            continue
        # Prefer a binary wheel built for this interpreter over a generic one.
        usable.sort(key=lambda f: ("none-any" in f, f))
        with zipfile.ZipFile(os.path.join(wheel_dir, usable[0])) as wheel:
            wheel.extractall(target)
    if missing:
        sys.exit(
            "rayfine: no wheel of %s fits Python %s on %s (%s). Set RAYFINE_IMAGE_PYTHONS to include"
            " this version, or use a base image with a supported Python."
            % (", ".join(missing), platform.python_version(), tags[2], tags[3] or "unknown libc")
        )
    print(
        "rayfine: installed %d distributions for Python %s into %s"
        % (len(by_project), platform.python_version(), target)
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
