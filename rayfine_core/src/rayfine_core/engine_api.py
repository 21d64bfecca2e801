"""Helpers for runtimes whose engine answers in the Docker Engine API's shapes.

Docker, Podman (both its compat and libpod APIs) and other engines that
copied them describe containers the same way: ``State`` with ``Running``,
``ExitCode`` and ``OOMKilled``; ``NetworkSettings.Ports``; list entries
with ``Id``, ``Names``, ``Image``, ``State`` and ``Labels``.  A runtime
plugin for such an engine can use these instead of parsing them again.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable, Generic, Mapping, Optional, TypeVar

from . import errors
from .types import ContainerRecord, ContainerState, Limits, StartRequest

if TYPE_CHECKING:
    from .runtime import Runtime

CPU_PERIOD = 100_000
"""CFS period (µs) for ``cpu_limit``: the quota is ``cpu_limit`` times this."""

C = TypeVar("C")


class LazyClient(Generic[C]):
    """An engine client made on first use, once, even when threads race for it.

    Runtimes are created when a user first names them, and listing plugins
    must not need a running engine, so the connection is made here, later.

    :param connect: makes and checks the client; raises
        :class:`~rayfine_core.errors.EngineUnavailableError` if it cannot.
    """

    def __init__(self, connect: Callable[[], C]) -> None:
        self._connect = connect
        self._client: Optional[C] = None
        self.lock = threading.Lock()
        """Held while connecting or resetting; runtimes may hold it to reset more state."""

    def get(self) -> C:
        client = self._client
        if client is None:
            with self.lock:
                if self._client is None:
                    self._client = self._connect()
                client = self._client
        return client

    def reset(self) -> Optional[C]:
        """Forget the client (the next :meth:`get` connects again) and return it, for closing."""
        with self.lock:
            client, self._client = self._client, None
        return client


def container_state(state: Mapping[str, Any]) -> ContainerState:
    """A :class:`ContainerState` from an inspect result's ``State``."""
    return ContainerState(
        running=bool(state.get("Running")),
        exit_code=state.get("ExitCode"),
        oom_killed=bool(state.get("OOMKilled")),
        status=state.get("Status", ""),
    )


def container_record(
    entry: Mapping[str, Any], runtime: str, created: Optional[float] = None
) -> ContainerRecord:
    """A :class:`ContainerRecord` from one entry of a container listing.

    :param created: when the container was created (seconds since the epoch);
        engines disagree on the format of ``Created``, so the caller converts it.
    """
    return ContainerRecord(
        id=entry["Id"],
        name=(entry.get("Names") or ["?"])[0].lstrip("/"),
        image=entry.get("Image", ""),
        status=entry.get("State", ""),
        labels=entry.get("Labels") or {},
        runtime=runtime,
        created=created,
    )


def limit_options(limits: Limits) -> dict[str, Any]:
    """Container-create options for ``limits``, as the docker SDK and podman-py name them.

    Swap is capped at the memory limit, so running out of memory is an OOM
    kill the engine reports, not a slow crawl through swap.
    """
    options: dict[str, Any] = {}
    if limits.mem_limit:
        options["mem_limit"] = options["memswap_limit"] = limits.mem_limit
    if limits.cpu_limit:
        options["cpu_period"] = CPU_PERIOD
        options["cpu_quota"] = int(limits.cpu_limit * CPU_PERIOD)
    if limits.pids_limit:
        options["pids_limit"] = limits.pids_limit
    return options


def published_port(
    runtime: "Runtime", container_id: str, attrs: Mapping[str, Any], request: StartRequest
) -> int:
    """The host port ``request.container_port`` is published on, from the container's inspect data.

    A container that exited at once has no published port: it is removed and
    :class:`~rayfine_core.errors.StartError` carries its last log lines.
    """
    ports = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    bindings = ports.get(f"{request.container_port}/tcp")
    if bindings:
        return int(bindings[0]["HostPort"])
    output = runtime.logs(container_id)
    runtime.stop(container_id, timeout=0)
    raise errors.StartError(
        f"Container {request.name!r} exited before its port was published", output
    )
