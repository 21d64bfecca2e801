"""rayfine-server: the HTTP server Rayfine runs inside each container to serve env.py.

Import-light on purpose: the core reads :func:`locked_requirements` and
:data:`PACKAGE_DIR` on the host to build images, without importing FastAPI.
The app itself lives in :mod:`rayfine_server.app`.
"""

from __future__ import annotations

from pathlib import Path
from typing import List

__version__ = "0.1.0"

#: This package's directory, copied as a whole into images.
PACKAGE_DIR = Path(__file__).resolve().parent

#: Exact pins of every runtime dependency (transitively) for the image.
LOCK_FILE = PACKAGE_DIR / "requirements.lock"


def locked_requirements() -> List[str]:
    """The ``name==version`` lines of :data:`LOCK_FILE`, without comments or blanks."""
    lines = LOCK_FILE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
