"""Entry point of the ``docker`` runtime (group ``rayfine``)."""

from __future__ import annotations

from typing import Iterator

from rayfine_core import RuntimeSpec, hookimpl


@hookimpl
def rayfine_runtimes() -> Iterator[RuntimeSpec]:
    from .runtime import DockerRuntime

    yield RuntimeSpec(
        name="docker", factory=DockerRuntime, description="Docker Engine via the docker SDK"
    )
