"""Helpers for runtimes whose engine answers in the Docker Engine API's shapes.

Docker, Podman (both its compat and libpod APIs) and other engines that
copied them describe containers the same way: ``State`` with ``Running``,
``ExitCode`` and ``OOMKilled``; ``NetworkSettings.Ports``; list entries
with ``Id``, ``Names``, ``Image``, ``State`` and ``Labels``.  A runtime
plugin for such an engine can use these instead of parsing them again.
"""

from __future__ import annotations

import contextlib
import re
import threading
from typing import TYPE_CHECKING, Any, Callable, Generic, Iterator, Mapping, Optional, TypeVar

from .. import errors
from . import labels
from .types import ContainerRecord, ContainerState, Limits, StartRequest

if TYPE_CHECKING:
    from .base import Runtime

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
    runtime: Runtime, container_id: str, attrs: Mapping[str, Any], request: StartRequest
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


def unreachable_error(exc: BaseException) -> Optional[errors.EngineUnavailableError]:
    """An :class:`EngineUnavailableError` if ``exc`` means the engine is gone or frozen, else None.

    Covers what HTTP-over-socket SDKs (docker, podman-py: both on ``requests``)
    raise when the daemon is down, restarting, or answers nothing in time.
    """
    chain: list[BaseException] = []
    seen: Optional[BaseException] = exc
    while seen is not None and len(chain) < 8:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    for error in chain:
        kind = f"{type(error).__module__}.{type(error).__name__}"
        if isinstance(error, (ConnectionError, TimeoutError)) or (
            kind.startswith(("requests.exceptions.", "urllib3.exceptions."))
            and any(
                word in kind for word in ("Connection", "Timeout", "Protocol", "ChunkedEncoding")
            )
        ):
            return errors.EngineUnavailableError(
                f"The container engine did not answer ({type(error).__name__}: {error})"
            )
    return None


@contextlib.contextmanager
def engine_errors(engine: str, fix: str) -> Iterator[None]:
    """Turn the engine being unreachable or frozen into :class:`EngineUnavailableError`.

    :param engine: the engine's name for the message (``"Docker"``).
    :param fix: what to do about it (``"start dockerd"``).
    """
    try:
        yield
    except errors.RayfineError:
        raise
    except Exception as exc:
        lost = unreachable_error(exc)
        if lost is None:
            raise
        raise errors.EngineUnavailableError(f"{engine}: {lost} {fix}") from exc


_BAD_REFERENCE = re.compile(
    r"invalid reference format|invalid image name|repository name must", re.I
)


def is_bad_reference(message: str) -> bool:
    """True if an engine's error message says an image reference is malformed."""
    return bool(_BAD_REFERENCE.search(message))


def ours(found_labels: Mapping[str, str], request: StartRequest) -> bool:
    """True if a container with ``found_labels`` is the one ``request`` asked for.

    Compared by env id, not by all labels: Docker adds the image's labels
    to the container's, so the sets never match exactly.
    """
    env_id = request.labels.get(labels.ENV_ID)
    return env_id is not None and found_labels.get(labels.ENV_ID) == env_id
