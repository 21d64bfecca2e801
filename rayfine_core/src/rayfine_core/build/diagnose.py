"""Say why a build failed when the engine only says ``returned a non-zero code``.

The usual reason on hosts like this project's: ``pip install`` inside the
build cannot reach a package index (containers often have no route to one),
or the ``wheels/`` directory lacks a wheel that fits the image's Python.  The
engine's message names neither; the build output does.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from ..errors import ImageBuildError

_NO_NETWORK = re.compile(
    r"NewConnectionError|Failed to establish a new connection|Temporary failure in name"
    r" resolution|Name or service not known|Network is unreachable|No route to host|SSLError|"
    r"ProxyError|ConnectTimeoutError|Connection refused|Could not fetch URL|"
    r"Retrying \(Retry\(total=",
)
_NOT_FOUND = re.compile(
    r"(?:No matching distribution found for|Could not find a version that satisfies the"
    r" requirement)\s+([^\s(]+)"
)
_NO_REGISTRY = re.compile(
    r"registry-1\.docker\.io|pull access denied|manifest unknown|repository does not exist|"
    r"initializing source docker://|error pulling image|lookup [\w.-]+ on [\d.:]+: no such host"
)
_NO_PIP = re.compile(r"No module named pip|pip: not found|python3: not found")


def explain(error: ImageBuildError, env_dir: Path, offline_wheels: bool) -> ImageBuildError:
    """``error`` with the likely cause and its fix in its first line, when they can be told."""
    hint = _hint(f"{error}\n{error.log_tail}", env_dir, offline_wheels)
    if hint is None:
        return error
    first = str(error).partition("\n--- last build output ---\n")[0]
    return ImageBuildError(f"{hint}\n{first}", error.log_tail)


def _hint(text: str, env_dir: Path, offline_wheels: bool) -> Optional[str]:
    if _NO_REGISTRY.search(text):
        return (
            "The build failed: its base image is not on this host and no image registry is"
            " reachable (Rayfine never needs one). Fix: set RAYFINE_BASE_IMAGE to an image the"
            " engine has (`docker images`; `rayfine doctor` checks it), or load one with"
            " `docker load`."
        )
    if "pip" not in text:
        return None
    if _NO_PIP.search(text):
        return (
            "The build failed: the base image has no pip to install requirements.txt with."
            " Use a base image with pip (RAYFINE_BASE_IMAGE, e.g. python:3.11-slim), or write a"
            " Dockerfile that installs your dependencies."
        )
    missing = _NOT_FOUND.search(text)
    if offline_wheels and missing:
        return (
            f"The build failed: pip found no wheel of {missing.group(1)} in {env_dir}/wheels that"
            f" fits the image's Python and platform (it installs from wheels/ only, never from an"
            f" index). Fix: `rayfine wheels {env_dir}` downloads every requirement and its"
            " dependencies for the image on this host; then build again."
        )
    if missing and not _NO_NETWORK.search(text):
        return (
            f"The build failed: the package index has no {missing.group(1)} that fits the"
            " image's Python and platform. Check the name and version in requirements.txt."
        )
    if _NO_NETWORK.search(text):
        return (
            "The build failed: pip could not reach a package index from inside the build"
            " (containers on this host have no route to one). Fix: put the wheels in"
            f" {env_dir}/wheels (`rayfine wheels {env_dir}` downloads them on this host) and"
            " build again; the default Dockerfile then installs offline."
        )
    return None
