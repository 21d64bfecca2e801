"""``ExampleRuntime``: another runtime, found by name, behind a name of its own.

Only ``rayfine_core``'s public names are used: the wrapped runtime comes from
``rayfine_core.get_runtime`` (so it is whatever plugin provides that name),
and what it starts is told apart from the wrapped runtime's own containers
by the ``rayfine.runtime`` label the core puts on every container.  The
label and variable this plugin adds come from its ``rayfine_start`` hook
(see :mod:`.plugin`), not from here.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, Mapping

import rayfine_core
from rayfine_core import (
    BuildRequest,
    Capabilities,
    ContainerHandle,
    ContainerRecord,
    ContainerState,
    Runtime,
    StartRequest,
)

from .plugin import LABEL


class ExampleRuntime(Runtime):
    """Delegates to the runtime named ``inner`` (docker by default)."""

    name = "example"
    capabilities = Capabilities(unix_socket=True, follow_logs=True)

    def __init__(self, inner: str = "docker") -> None:
        self.inner_name = inner

    @property
    def inner(self) -> Runtime:
        # Looked up on each use: the core creates and caches it, and closes it.
        return rayfine_core.get_runtime(self.inner_name)

    def build(self, request: BuildRequest) -> str:
        return self.inner.build(dataclasses.replace(request, labels={**request.labels, LABEL: "1"}))

    def image_id(self, image: str) -> str:
        return self.inner.image_id(image)

    def image_labels(self, image: str) -> dict[str, str]:
        return self.inner.image_labels(image)

    def start(self, request: StartRequest) -> ContainerHandle:
        return dataclasses.replace(self.inner.start(request), runtime=self.name)

    def health(self, container_id: str) -> ContainerState:
        return self.inner.health(container_id)

    def logs(self, container_id: str, tail: int = 50) -> str:
        return self.inner.logs(container_id, tail)

    def follow_logs(self, container_id: str, tail: int = 50) -> Iterator[str]:
        return self.inner.follow_logs(container_id, tail)

    def stop(self, container_id: str, timeout: float = 5.0) -> None:
        self.inner.stop(container_id, timeout)

    def list_containers(self, labels: Mapping[str, str]) -> list[ContainerRecord]:
        records = self.inner.list_containers(labels)
        return [dataclasses.replace(record, runtime=self.name) for record in records]

    def version(self) -> str:
        return f"example 0.1.0 on {self.inner_name} {self.inner.version()}"
