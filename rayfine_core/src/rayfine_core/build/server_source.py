"""Locate the installed ``rayfine_server`` package, which gets copied into images."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import ValidationError


def server_package_dir() -> Path:
    """Directory of the ``rayfine_server`` package on this host."""
    spec = importlib.util.find_spec("rayfine_server")
    if spec is None or not spec.submodule_search_locations:
        raise ValidationError(
            "Building a function-based environment needs the Rayfine server on this host:"
            " pip install 'rayfine-core[server]'"
        )
    return Path(list(spec.submodule_search_locations)[0])
