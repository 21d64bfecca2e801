"""Download the injected server's pinned wheels on the host, once.

Containers often cannot reach a package index; the host can.  The wheels
are fetched with ``pip download`` for every Python the image might have
(``RAYFINE_IMAGE_PYTHONS``, default 3.9-3.13) and both Linux libcs, then
cached under ``~/.cache/rayfine/wheels/<hash of the lock file>``.  Inside
the image, ``install_wheels.py`` picks the ones that fit.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from ..errors import ImageBuildError, ValidationError

DEFAULT_PYTHONS = ("3.9", "3.10", "3.11", "3.12", "3.13")
_lock = threading.Lock()


def cache_dir() -> Path:
    """Root of Rayfine's on-disk cache (``RAYFINE_CACHE_DIR`` or ``~/.cache/rayfine``)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rayfine"
    return Path(os.environ.get("RAYFINE_CACHE_DIR", default))


def server_lock() -> str:
    """The pinned requirements of the injected server."""
    from .server_source import server_package_dir

    return (server_package_dir() / "requirements.lock").read_text()


def image_pythons() -> tuple[str, ...]:
    raw = os.environ.get("RAYFINE_IMAGE_PYTHONS", "")
    return tuple(v.strip() for v in raw.split(",") if v.strip()) or DEFAULT_PYTHONS


def _platforms() -> dict[str, list[str]]:
    machine = platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    return {
        "glibc": [f"manylinux2014_{machine}", f"manylinux_2_28_{machine}", f"linux_{machine}"],
        "musl": [f"musllinux_1_1_{machine}", f"musllinux_1_2_{machine}"],
    }


def wheels_dir() -> Path:
    """Where :func:`ensure_wheels` keeps the wheels for the current lock file and Pythons.

    The directory holds a ``.complete`` marker once every download succeeded.
    """
    key = hashlib.sha256(
        (server_lock() + ",".join(image_pythons()) + platform.machine()).encode()
    ).hexdigest()[:16]
    return cache_dir() / "wheels" / key


def ensure_wheels(on_output=None) -> Path:
    """Return a directory holding every pinned wheel, downloading what is missing."""
    lock = server_lock()
    pythons = image_pythons()
    target = wheels_dir()
    with _lock:
        if (target / ".complete").exists():
            return target
        if on_output:
            on_output(
                f"rayfine: downloading the server's pinned wheels for Python {', '.join(pythons)} (once)"
            )
        staging = Path(tempfile.mkdtemp(prefix="wheels-", dir=_mkdir(target.parent)))
        lock_file = staging / "requirements.lock"
        lock_file.write_text(lock)
        fetched = [v for v in pythons if _download_for(v, lock_file, staging)]
        if not fetched:
            shutil.rmtree(staging, ignore_errors=True)
            raise ImageBuildError(
                "Could not download the server's wheels from the package index for any of"
                f" Python {', '.join(pythons)}. Check this host's network/pip configuration"
                " (PIP_INDEX_URL, proxies), or pre-fill the cache with RAYFINE_CACHE_DIR."
            )
        lock_file.unlink()
        (staging / ".complete").write_text("\n".join(fetched))
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        return target


def _download_for(version: str, lock_file: Path, dest: Path) -> bool:
    if not version.replace(".", "").isdigit() or version.count(".") != 1:
        raise ValidationError(f"RAYFINE_IMAGE_PYTHONS entry {version!r} is not of the form 3.11.")
    ok = False
    for platforms in _platforms().values():
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            version,
            "--implementation",
            "cp",
            "-r",
            str(lock_file),
            "-d",
            str(dest),
        ]
        for plat in platforms:
            cmd += ["--platform", plat]
        result = subprocess.run(cmd, capture_output=True, text=True)
        ok = ok or result.returncode == 0
    return ok


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
