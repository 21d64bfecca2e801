"""rayfine-server: the HTTP server Rayfine runs inside each container to serve env.py.

Standard library only, on Python 3.9-3.13.  Import-light on purpose: the
core reads :func:`locked_requirements` and :data:`PACKAGE_DIR` on the host to
build images.  The server starts in :mod:`rayfine_server.__main__`.
"""

from __future__ import annotations

from pathlib import Path
from typing import List

__version__ = "0.1.0"

#: This package's directory, copied as a whole into images.
PACKAGE_DIR = Path(__file__).resolve().parent

#: Exact pins of every runtime dependency for the image: none (kept for builders).
LOCK_FILE = PACKAGE_DIR / "requirements.lock"


def locked_requirements() -> List[str]:
    """The ``name==version`` lines of :data:`LOCK_FILE`, without comments or blanks."""
    lines = LOCK_FILE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
