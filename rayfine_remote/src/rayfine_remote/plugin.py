"""Entry point of the ``remote`` runtime (group ``rayfine``); imports nothing heavy."""

from __future__ import annotations

from typing import Iterator

from rayfine_core.plugins.hookspecs import hookimpl
from rayfine_core.runtime.types import RuntimeSpec


@hookimpl
def rayfine_runtimes() -> Iterator[RuntimeSpec]:
    from .connections import connect

    yield RuntimeSpec(
        name="remote",
        factory=connect,
        description="a Rayfine gateway on another host (`rayfine serve`), over HTTPS",
    )
