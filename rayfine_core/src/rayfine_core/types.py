"""Small value types shared by the core and runtime plugins."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Literal, Mapping, Optional

if TYPE_CHECKING:
    from .runtime import Runtime

SOCKET_MOUNT = "/run/rayfine"
"""Where a runtime mounts ``StartRequest.socket_dir`` inside the container."""
SOCKET_NAME = "server.sock"
"""The server's Unix socket, in that directory."""


class EnvType(str, enum.Enum):
    """How an environment is served inside its container."""

    FUNCTION_BASED = "function_based"
    """env.py defines an ``Actor`` and/or functions; Rayfine injects its server."""

    HTTP_BASED = "http_based"
    """env.py is an existing FastAPI app run by the image's own CMD."""


@dataclass(frozen=True)
class RuntimeSpec:
    """What a plugin's ``rayfine_runtimes`` hook yields: one named runtime.

    :param name: the name users pass as ``load_env(..., runtime=name)``.
    :param factory: a zero-argument callable (usually the :class:`Runtime`
        subclass) creating the runtime the first time it is used.
    :param description: one line shown by ``rayfine plugins``.
    """

    name: str
    factory: Callable[[], "Runtime"]
    description: str = ""


@dataclass(frozen=True)
class Endpoint:
    """Where the server of a started container listens, as seen from this host.

    Either ``unix_socket`` is set (a path on this host), or ``host``/``port``.
    """

    host: str = "127.0.0.1"
    port: Optional[int] = None
    unix_socket: Optional[str] = None

    @property
    def base_url(self) -> str:
        if self.unix_socket:
            return "http://rayfine"  # host part is ignored over a Unix socket
        return f"http://{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"unix:{self.unix_socket}" if self.unix_socket else self.base_url


@dataclass
class BuildRequest:
    """One ``docker build``-style build, handed to :meth:`Runtime.build`.

    :param context_dir: build context directory (already prepared).
    :param dockerfile: Dockerfile path relative to ``context_dir``.
    :param tag: image tag to apply.
    :param buildargs: ``ARG`` values.
    :param labels: labels to set on the image.
    :param nocache: do not reuse cached layers.
    :param on_output: called with each line of build output (None: discard).
    """

    context_dir: Path
    dockerfile: str
    tag: str
    buildargs: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    nocache: bool = False
    on_output: Optional[Callable[[str], None]] = None


@dataclass
class Limits:
    """Resource limits for one container; ``None`` means the engine default."""

    mem_limit: Optional[str] = None
    """Memory cap, e.g. ``"512m"`` or ``"2g"``."""
    cpu_limit: Optional[float] = None
    """Number of CPUs, e.g. ``0.5``."""
    pids_limit: Optional[int] = None
    """Maximum number of processes/threads."""


@dataclass
class StartRequest:
    """One container to start, handed to :meth:`Runtime.start`.

    :param image: image reference (must exist locally).
    :param name: container name (unique; Rayfine generates one when not given).
    :param env: environment variables for the container (may hold secrets:
        never log them).
    :param labels: labels to set; Rayfine adds its ownership labels.
    :param container_port: port the server listens on inside the container.
    :param host_port: host port to publish on 127.0.0.1 (None: any free one).
    :param socket_dir: when set, serve over a Unix socket: mount this host
        directory at :data:`SOCKET_MOUNT` (``/run/rayfine``) and the server
        listens on :data:`SOCKET_NAME` there.
    :param network: engine network mode; ``"none"`` cuts the container off.
    :param limits: resource limits.
    :param cap_add: capabilities to keep (all others are dropped).
    :param command: override the image's command (None: image default).
    """

    image: str
    name: str
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    container_port: int = 8000
    host_port: Optional[int] = None
    socket_dir: Optional[Path] = None
    network: Optional[str] = None
    limits: Limits = field(default_factory=Limits)
    cap_add: tuple[str, ...] = ()
    command: Optional[list[str]] = None

    def socket_endpoint(self) -> Optional[Endpoint]:
        """Where the server listens on the host when serving over a Unix socket, else None."""
        if self.socket_dir is None:
            return None
        return Endpoint(unix_socket=str(self.socket_dir / SOCKET_NAME))


@dataclass(frozen=True)
class ContainerHandle:
    """A started container as a runtime knows it."""

    id: str
    name: str
    endpoint: Endpoint
    runtime: str


@dataclass(frozen=True)
class ContainerState:
    """What :meth:`Runtime.health` reports about a container."""

    running: bool
    exit_code: Optional[int] = None
    oom_killed: bool = False
    status: str = ""


@dataclass(frozen=True)
class ContainerRecord:
    """A Rayfine-owned container found by its labels (for cleanup and ``rayfine ps``)."""

    id: str
    name: str
    image: str
    status: str
    labels: Mapping[str, str]
    runtime: str
    created: Optional[float] = None
    """When the container was created (Unix time), if the runtime reports it."""


LogSource = Literal["stdout", "stderr", "both"]
