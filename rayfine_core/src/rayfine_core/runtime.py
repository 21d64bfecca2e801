"""The interface a container runtime implements.

A runtime plugin subclasses :class:`Runtime` and yields it from the
``rayfine_runtimes`` hook (see :mod:`rayfine_core.hookspecs`).  Calls to an
environment go over HTTP to the :class:`~rayfine_core.types.Endpoint` that
:meth:`Runtime.start` returns, so a runtime only manages images and
containers.  Import the engine SDK inside the methods (or the constructor),
never at module import time, so listing plugins needs no daemon.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Mapping

from .types import BuildRequest, ContainerHandle, ContainerRecord, ContainerState, StartRequest


class Runtime(ABC):
    """A container engine as Rayfine uses it.  Methods may block; the async
    API calls them from worker threads, so they must be thread-safe."""

    name: ClassVar[str] = ""

    @abstractmethod
    def build(self, request: BuildRequest) -> str:
        """Build an image and return its id.

        Stream each output line to ``request.on_output`` when set.  Raise
        :class:`~rayfine_core.errors.ImageBuildError` with the last output
        lines on failure.
        """

    @abstractmethod
    def image_labels(self, image: str) -> dict[str, str]:
        """Return the labels of a local image.

        Raise :class:`~rayfine_core.errors.ImageNotFoundError` if the image is
        not present locally.  Never pull.
        """

    @abstractmethod
    def start(self, request: StartRequest) -> ContainerHandle:
        """Create and start a container detached, and return where it listens.

        Apply ``request.env``, ``labels``, ``limits``, ``network``; drop all
        capabilities except ``cap_add``; set no-new-privileges; publish
        ``container_port`` on 127.0.0.1 only (or mount ``socket_dir``).
        Raise :class:`~rayfine_core.errors.ImageNotFoundError` for a missing
        image, :class:`~rayfine_core.errors.StartError` otherwise.  Never put
        environment values in an error message.
        """

    @abstractmethod
    def health(self, container_id: str) -> ContainerState:
        """Report whether the container is running, and its exit code / OOM flag if not.

        A container that no longer exists is reported as not running.
        """

    @abstractmethod
    def logs(self, container_id: str, tail: int = 50) -> str:
        """Return the last ``tail`` lines of the container's output ("" if gone)."""

    @abstractmethod
    def stop(self, container_id: str, timeout: float = 5.0) -> None:
        """Stop and remove the container.  Idempotent: a missing container is fine."""

    @abstractmethod
    def list_containers(self, labels: Mapping[str, str]) -> list[ContainerRecord]:
        """List containers (running or not) carrying all of ``labels``."""

    def version(self) -> str:
        """Return the engine's version string; raise EngineUnavailableError if unreachable."""
        return "unknown"

    def close(self) -> None:
        """Release client connections and anything the runtime started itself."""
