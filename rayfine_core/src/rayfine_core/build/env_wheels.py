"""Fill an environment's ``wheels/`` on this host, so its image builds without a package index.

Containers here often cannot reach an index; the host can.  ``pip download``
fetches every requirement *and its dependencies* as wheels for the image's
Python (read from the base image's name, ``python:3.11-slim`` -> 3.11, else
every version Rayfine supports) on manylinux, and the default Dockerfile then
installs them with ``--no-index``.
"""

from __future__ import annotations

import platform
import re
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Callable, Optional, Sequence

from ..errors import ImageBuildError, ValidationError
from .deps import REQUIREMENTS, WHEELS
from .wheelhouse import image_pythons

_PYTHON_IN_IMAGE = re.compile(r"(?:^|/)python:(3\.\d+)")
GLIBC_MINORS = range(17, 40)
"""manylinux_2_17 (CentOS 7) up to glibc 2.39: every Debian or Ubuntu an image may be based on."""


def image_python(base_image: str) -> Optional[str]:
    """``3.11`` for ``python:3.11-slim`` or ``rayfine/python:3.11-bookworm``; None if unknown."""
    found = _PYTHON_IN_IMAGE.search(base_image)
    return found.group(1) if found else None


def platform_tags(machine: Optional[str] = None) -> list[str]:
    """The manylinux platform tags of glibc images on this machine's architecture."""
    raw = (machine or platform.machine()).lower()
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(raw, raw)
    tags = [f"manylinux_2_{minor}_{arch}" for minor in GLIBC_MINORS]
    if arch in ("x86_64", "i686", "aarch64"):
        tags += [f"manylinux2014_{arch}"]
    if arch in ("x86_64", "i686"):
        tags += [f"manylinux2010_{arch}", f"manylinux1_{arch}"]
    return tags


def download_command(requirements: Path, dest: Path, python: str) -> list[str]:
    """The ``pip download`` command line for one Python version."""
    digits = python.replace(".", "")
    words = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check"]
    words += ["--dest", str(dest), "-r", str(requirements), "--only-binary=:all:"]
    words += ["--python-version", python, "--implementation", "cp"]
    words += ["--abi", f"cp{digits}", "--abi", "abi3", "--abi", "none"]
    for tag in platform_tags():
        words += ["--platform", tag]
    return words


def download_wheels(
    env_dir: Path,
    pythons: Sequence[str] = (),
    base_image: str = "",
    emit: Optional[Callable[[str], None]] = None,
) -> list[Path]:
    """Download ``env_dir/requirements.txt`` and its dependencies into ``env_dir/wheels``.

    :param pythons: versions such as ``"3.11"`` (default: the base image's, else 3.9-3.13).
    :return: the wheels now in ``wheels/``.
    :raises ValidationError: no requirements.txt.
    :raises ImageBuildError: pip is missing, or a requirement has no wheel that fits.
    """
    requirements = env_dir / REQUIREMENTS
    if not requirements.is_file():
        raise ValidationError(
            f"No {REQUIREMENTS} in {env_dir}: list the packages env.py needs there first."
        )
    from_image = image_python(base_image)
    chosen = list(pythons) or ([from_image] if from_image else list(image_pythons()))
    dest = env_dir / WHEELS
    dest.mkdir(exist_ok=True)
    for python in chosen:
        if emit:
            emit(f"rayfine: downloading wheels of {REQUIREMENTS} for Python {python}")
        _run(download_command(requirements, dest, python), python, emit)
    return sorted(dest.glob("*.whl"))


def _run(command: list[str], python: str, emit: Optional[Callable[[str], None]]) -> None:
    try:
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
        )
    except OSError as exc:
        raise ImageBuildError(f"Could not run pip: {exc}") from None
    tail: deque[str] = deque(maxlen=15)
    assert process.stdout is not None
    for line in process.stdout:
        line = line.rstrip()
        tail.append(line)
        if emit and line and not line.startswith("WARNING: Location"):
            emit(line)
    if process.wait() == 0:
        return
    text = "\n".join(tail)
    if "No module named pip" in text:
        raise ImageBuildError(
            f"{sys.executable} has no pip (a uv-made venv?): install it (`python -m ensurepip`"
            " or `uv pip install pip`) and run this again.",
            text,
        )
    missing = re.search(
        r"(?:No matching distribution found for|satisfies the requirement)\s+(\S+)", text
    )
    if missing:
        raise ImageBuildError(
            f"{missing.group(1)} has no wheel for CPython {python} on manylinux"
            f" {platform.machine()}"
            " (or the index cannot be reached). If it only ships a source distribution, build a"
            f" wheel on a matching machine (`pip wheel {missing.group(1)} -w wheels`) and put it in"
            " wheels/.",
            text,
        )
    raise ImageBuildError(f"pip download failed for Python {python}", text)
