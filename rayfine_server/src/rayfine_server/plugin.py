"""Entry point of Rayfine's own in-image server (group ``rayfine``): the ``python`` server.

Runs on the host, at build time only: it tells the builder what goes into an
image (this package and its launcher) and how the image starts the server.
Nothing here runs in containers.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Iterator, Mapping

from rayfine_core import ServerSpec, hookimpl

from . import PACKAGE_DIR

SITE = "/opt/rayfine/site"


HOST_ONLY = ("plugin.py", "bench_server.py")
"""Modules of this package that run on the host and never go into images."""


def _files() -> Mapping[str, Path]:
    launcher = resources.files("rayfine_core.image").joinpath("rayfine_start.py")
    files = {
        f"rayfine_server/{path.name}": path
        for path in sorted(PACKAGE_DIR.glob("*.py"))
        if path.name not in HOST_ONLY
    }
    files["rayfine_server/requirements.lock"] = PACKAGE_DIR / "requirements.lock"
    files["rayfine_start.py"] = Path(str(launcher))
    return files


@hookimpl
def rayfine_servers() -> Iterator[ServerSpec]:
    yield ServerSpec(
        name="python",
        files=_files,
        command=("python3", f"{SITE}/rayfine_start.py"),
        description="Rayfine's server for env.py (standard library only, Python 3.9-3.13)",
    )
