"""Entry point of the ``podman`` runtime (group ``rayfine``)."""

from __future__ import annotations

from typing import Iterator

from rayfine_core import RuntimeSpec, hookimpl


@hookimpl
def rayfine_runtimes() -> Iterator[RuntimeSpec]:
    from .runtime import PodmanRuntime

    yield RuntimeSpec(
        name="podman", factory=PodmanRuntime, description="Podman via podman-py and its API service"
    )
