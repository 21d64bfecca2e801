"""Entry point of the ``process`` test runtime (group ``rayfine``); imports nothing heavy."""

from __future__ import annotations

from typing import Iterator

from ..plugins.hookspecs import hookimpl
from ..runtime.types import RuntimeSpec


@hookimpl
def rayfine_runtimes() -> Iterator[RuntimeSpec]:
    from .process_runtime import ProcessRuntime

    yield RuntimeSpec(
        name="process",
        factory=ProcessRuntime,
        description="TEST DOUBLE: the server as a host process, no isolation (tests, debugging)",
    )
