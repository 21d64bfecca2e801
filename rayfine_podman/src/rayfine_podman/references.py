"""Image references as Docker resolves them, checked against podman's image names.

Podman resolves a short name to any local image whose name ends with it
(``python:3.11`` finds ``localhost/x/python:3.11``), and stores local builds
as ``localhost/NAME:TAG``.  Rayfine accepts a reference only for the image
Docker would pick: the name itself, or its ``localhost/`` / ``docker.io``
spellings.
"""

from __future__ import annotations

import re
from typing import Any

_IMAGE_ID = re.compile(r"^(sha256:)?[0-9a-f]{12,64}$")


def candidates(reference: str) -> set[str]:
    """The full names Docker would give ``reference``, plus podman's ``localhost/``."""
    name = reference if ":" in reference.rsplit("/", 1)[-1] else f"{reference}:latest"
    first = name.split("/", 1)[0]
    if "/" in name and ("." in first or ":" in first or first == "localhost"):
        return {name}  # already fully qualified
    names = {name, f"localhost/{name}", f"docker.io/{name}"}
    if "/" not in name:
        names.add(f"docker.io/library/{name}")
    return names


def matches(reference: str, image_id: str, tags: list[str]) -> bool:
    """True if the image podman found for ``reference`` is the one Docker would have found."""
    if "@" in reference:
        return True  # a digest names exactly one image already
    if _IMAGE_ID.match(reference) and image_id.removeprefix("sha256:").startswith(
        reference.removeprefix("sha256:")
    ):
        return True
    return bool(candidates(reference) & set(tags))


def exact_name(reference: str, image: Any) -> str:
    """A name for ``image`` that podman cannot resolve to another image."""
    tags = candidates(reference) & set(image.attrs.get("RepoTags") or [])
    return sorted(tags)[0] if tags else str(image.id)
