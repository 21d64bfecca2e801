"""Entry point of the ``example`` runtime (group ``rayfine``); imports nothing heavy."""

from __future__ import annotations

from typing import Iterator

from rayfine_core import RuntimeSpec, hookimpl


@hookimpl
def rayfine_runtimes() -> Iterator[RuntimeSpec]:
    from .runtime import ExampleRuntime

    yield RuntimeSpec(
        name="example",
        factory=ExampleRuntime,
        description="Example third-party plugin: docker, with containers labelled example.wrapped=1",
    )
