"""The interface a container runtime implements, and the capabilities it declares.

A runtime plugin subclasses :class:`Runtime` and yields it from the
``rayfine_runtimes`` hook (see :mod:`rayfine_core.plugins.hookspecs`).  Calls
to an environment go over HTTP to the :class:`~rayfine_core.runtime.types.Endpoint`
that :meth:`Runtime.start` returns, so a runtime only manages images and
containers.  Import the engine SDK inside the methods (or the constructor),
never at module import time, so listing plugins needs no daemon.

Two rules hold for every method of every runtime:

* losing the engine (daemon or API server unreachable, timing out, dying
  mid-request) raises :class:`~rayfine_core.errors.EngineUnavailableError`;
* every engine request has a deadline (:func:`engine_timeout`), so no
  method blocks for good on a frozen engine.
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Iterator, Mapping, Optional, Sequence

from ..errors import ValidationError
from .types import BuildRequest, ContainerHandle, ContainerRecord, ContainerState, StartRequest

DEFAULT_ENGINE_TIMEOUT = 30.0


def engine_timeout() -> float:
    """Seconds an engine request may take (``RAYFINE_ENGINE_TIMEOUT``, default 30)."""
    raw = os.environ.get("RAYFINE_ENGINE_TIMEOUT", "").strip()
    if not raw:
        return DEFAULT_ENGINE_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise ValidationError(f"RAYFINE_ENGINE_TIMEOUT must be a positive number, got {raw!r}.")
    return value


@dataclass(frozen=True)
class Capabilities:
    """What a runtime can do; the conformance suite skips, with the reason, what it cannot.

    :param unix_socket: mounts ``StartRequest.run_dir`` (a host directory) at
        ``/run/rayfine``: Unix-socket transport and the token file.
    :param host_ports: publishes the server on a 127.0.0.1 port of this host.
    :param network_none: honours ``network="none"``.
    :param memory_limit: enforces ``mem_limit``; ``cpu_quota``: ``cpu_limit``
        as a CFS quota; ``pids_limit``: ``pids_limit``.
    :param oom_flag: reports an out-of-memory kill in ``ContainerState.oom_killed``.
    :param follow_logs: streams logs natively (otherwise the polling fallback).
    :param builds: :meth:`Runtime.build` works.
    :param runs_build_steps: builds run the Dockerfile's ``RUN`` steps (a failing one fails the build).
    :param user: honours ``StartRequest.user``.
    :param http_apps: serves http-based environments (their own CMD).
    :param isolation: the ``StartRequest.isolation`` levels it accepts.
    :param local_host: containers run on this host, so reaping orphans by the
        owner's pid applies.
    :param death_grace: seconds the engine may take to report a container that died
        (a cluster's node status lags; a local engine knows at once).
    :param mounts: honours ``StartRequest.mounts`` (host directories, read-only).
    :param engine_url_option: name of the factory keyword that points the
        runtime at an engine address (the conformance suite points it at a
        dead one); None if there is none.
    """

    unix_socket: bool = False
    host_ports: bool = True
    network_none: bool = True
    memory_limit: bool = True
    cpu_quota: bool = True
    pids_limit: bool = True
    oom_flag: bool = True
    follow_logs: bool = False
    builds: bool = True
    runs_build_steps: bool = True
    user: bool = True
    http_apps: bool = True
    isolation: frozenset[str] = frozenset({"container"})
    local_host: bool = True
    death_grace: float = 3.0
    mounts: bool = False
    engine_url_option: Optional[str] = None


class Runtime(ABC):
    """A container engine as Rayfine uses it.

    Methods may block; the async API calls them from worker threads, so they
    must be thread-safe.  A runtime object is never shared across processes:
    after ``os.fork()`` the core makes new ones in the child.
    """

    name: ClassVar[str] = ""
    capabilities: ClassVar[Capabilities] = Capabilities()

    @abstractmethod
    def build(self, request: BuildRequest) -> str:
        """Build an image and return its id.

        Stream each output line to ``request.on_output`` when set.

        :raises ImageBuildError: the build failed (with its last output lines).
        :raises EngineUnavailableError: the engine cannot be reached.
        """

    @abstractmethod
    def image_labels(self, image: str) -> dict[str, str]:
        """Return the labels of an image the runtime can start.  Never pull.

        :raises ImageNotFoundError: the image is not there.
        :raises ValidationError: ``image`` is not a valid reference.
        :raises EngineUnavailableError: the engine cannot be reached.
        """

    def image_id(self, image: str) -> str:
        """Return the engine's id of an image (raises as :meth:`image_labels`).

        The default checks the image exists and returns the reference itself;
        override it where the engine reports ids.
        """
        self.image_labels(image)
        return image

    @abstractmethod
    def start(self, request: StartRequest) -> ContainerHandle:
        """Create and start a container detached, and return where it listens.

        Apply ``env``, ``labels``, ``limits``, ``network``, ``user``,
        ``isolation``; drop all capabilities except ``cap_add``; forbid new
        privileges; publish ``container_port`` on 127.0.0.1 only (or mount
        ``run_dir``).  If the engine created something before failing,
        remove it (it carries ``request.labels``; never touch a namesake that
        does not).

        :raises ImageNotFoundError: the image is not there.
        :raises ValidationError: the request names something invalid (reference, name).
        :raises StartError: the engine refused (never quoting env values or the token).
        :raises EngineUnavailableError: the engine cannot be reached.
        """

    @abstractmethod
    def health(self, container_id: str) -> ContainerState:
        """Report whether the container runs, and its exit code / OOM flag if not.

        A container that no longer exists is ``running=False, status="removed"``.

        :raises EngineUnavailableError: the engine cannot be reached.
        """

    @abstractmethod
    def logs(self, container_id: str, tail: int = 50) -> str:
        """Return the last ``tail`` lines of the container's output ("" if gone).

        :raises EngineUnavailableError: the engine cannot be reached.
        """

    @abstractmethod
    def stop(self, container_id: str, timeout: float = 5.0) -> None:
        """Stop (waiting up to ``timeout`` s) and remove the container.

        Idempotent: a missing container, or one being removed, is success.

        :raises RuntimeFailure: the engine refused to remove it.
        :raises EngineUnavailableError: the engine cannot be reached.
        """

    @abstractmethod
    def list_containers(self, labels: Mapping[str, str]) -> list[ContainerRecord]:
        """List containers (running or not) carrying all of ``labels``.

        :raises EngineUnavailableError: the engine cannot be reached.
        """

    def capabilities_for(self, isolation: str) -> Capabilities:
        """The capabilities of containers started at ``isolation`` (default: :attr:`capabilities`)."""
        return self.capabilities

    def follow_logs(self, container_id: str, tail: int = 50) -> Iterator[str]:
        """Yield the last ``tail`` lines of output, then each new line, until the container stops.

        Lines keep their ``"\\n"``.  This default polls :meth:`logs` twice a
        second; override it with the engine's log stream where there is one.

        :raises EngineUnavailableError: the engine cannot be reached.
        """
        window = max(tail, _FOLLOW_WINDOW)
        seen: list[str] = []
        first = True
        while True:
            running = self.health(container_id).running  # before reading: no line lost at exit
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
        """Return the engine's version string.

        :raises EngineUnavailableError: the engine cannot be reached.
        """
        return "unknown"

    def close(self) -> None:  # noqa: B027 - optional: most runtimes hold nothing to release
        """Release client connections and anything the runtime started itself.

        Called once, at exit, by the plugin manager after every environment stopped.
        """


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
