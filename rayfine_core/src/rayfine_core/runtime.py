"""The interface a container runtime implements.

A runtime plugin subclasses :class:`Runtime` and yields it from the
``rayfine_runtimes`` hook (see :mod:`rayfine_core.hookspecs`).  Calls to an
environment go over HTTP to the :class:`~rayfine_core.types.Endpoint` that
:meth:`Runtime.start` returns, so a runtime only manages images and
containers.  Import the engine SDK inside the methods (or the constructor),
never at module import time, so listing plugins needs no daemon.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import ClassVar, Iterator, Mapping, Sequence

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

    def image_id(self, image: str) -> str:
        """Return the engine's id of a local image (ImageNotFoundError if absent).

        The default checks the image exists and returns the reference itself;
        override it where the engine reports ids.
        """
        self.image_labels(image)
        return image

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

    def follow_logs(self, container_id: str, tail: int = 50) -> Iterator[str]:
        """Yield the last ``tail`` lines of output, then each new line, until the container stops.

        Lines keep their ``"\\n"``.  This default polls :meth:`logs` twice a
        second; override it with the engine's log stream where there is one.
        """
        window = max(tail, _FOLLOW_WINDOW)
        seen: list[str] = []
        first = True
        while True:
            running = self.health(container_id).running  # before reading: no line is lost at exit
            lines = self.logs(container_id, window).splitlines(keepends=True)
            if running and lines and not lines[-1].endswith("\n"):
                lines.pop()  # a line still being written: take it whole on the next poll
            if first:
                yield from (lines[len(lines) - tail :] if tail > 0 else [])
            else:
                yield from _unseen(seen, lines)
            seen, first = lines, False
            if not running:
                return
            time.sleep(_FOLLOW_POLL)

    def version(self) -> str:
        """Return the engine's version string; raise EngineUnavailableError if unreachable."""
        return "unknown"

    def close(self) -> None:  # noqa: B027 - optional: most runtimes hold nothing to release
        """Release client connections and anything the runtime started itself."""


_FOLLOW_WINDOW = 1000
_FOLLOW_POLL = 0.5


def _unseen(previous: Sequence[str], current: Sequence[str]) -> Sequence[str]:
    """The lines of ``current`` after its longest prefix that ends ``previous``.

    Both are the last lines of a growing log; lines that scrolled out of the
    window between two polls are lost (only the polling fallback has a window).
    """
    for overlap in range(min(len(previous), len(current)), 0, -1):
        if previous[len(previous) - overlap :] == current[:overlap]:
            return current[overlap:]
    return current
