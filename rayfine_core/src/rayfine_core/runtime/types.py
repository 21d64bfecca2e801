"""Value types a runtime plugin receives and returns: requests, handles, endpoints, states."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional

from ..errors import ValidationError

if TYPE_CHECKING:
    from .base import Runtime

RUN_MOUNT = "/run/rayfine"
"""Where a runtime mounts ``StartRequest.run_dir`` inside the container."""
SOCKET_NAME = "server.sock"
"""The server's Unix socket, in that directory."""
TOKEN_NAME = "token"
"""The file in that directory holding the server's token (the server deletes it once read)."""
SERVER_USER = "10001:10001"
"""uid:gid the server runs as unless the caller asks for another user."""


_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REFERENCE = re.compile(
    rf"(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?"
    r"|(?:sha256:)?[0-9a-f]{12,64}"
)


def valid_reference(image: str) -> bool:
    """True if ``image`` is a well-formed image reference (``name[:tag][@digest]``) or image id."""
    return isinstance(image, str) and _REFERENCE.fullmatch(image) is not None


def check_reference(image: str) -> str:
    """``image``, if it is a well-formed reference; else :class:`ValidationError` saying so."""
    if not valid_reference(image):
        raise ValidationError(
            f"Invalid image reference {image!r}: use a lowercase name[:tag] such as"
            " 'affine:latest' (or an image id)."
        )
    return image


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
    factory: Callable[[], Runtime]
    description: str = ""


@dataclass(frozen=True)
class ServerSpec:
    """What a plugin's ``rayfine_servers`` hook yields: a server Rayfine can put into images.

    The server answers Rayfine's protocol (``rayfine_server``'s README) in the
    container: it reads its token from ``RAYFINE_TOKEN_FILE`` and listens on
    ``RAYFINE_UDS`` (or ``RAYFINE_HOST``/``RAYFINE_PORT``).

    :param name: the name builds pick it by (``build_image_from_env(..., server=name)``).
    :param files: called at build time; maps paths under ``/opt/rayfine/site`` in the
        image to host files or directories to copy there.
    :param command: the image's command, which starts the server.
    :param description: one line shown by ``rayfine plugins``.
    """

    name: str
    files: Callable[[], Mapping[str, Path]]
    command: tuple[str, ...]
    description: str = ""


@dataclass(frozen=True)
class TLSConfig:
    """How to verify (and authenticate to) a server reached over TLS.

    :param ca_data: PEM text of the certificate authorities to trust.
    :param ca_file: a file holding them instead.
    :param cert_file: client certificate for mutual TLS, with ``key_file``.
    :param server_hostname: name to verify the certificate against (default: the host).
    :param pin_sha256: hex SHA-256 of the server certificate (DER); when set,
        that exact certificate is required, whoever signed it.
    :param verify: False turns verification off (tests only).
    """

    ca_data: Optional[str] = None
    ca_file: Optional[str] = None
    cert_file: Optional[str] = None
    key_file: Optional[str] = None
    server_hostname: Optional[str] = None
    pin_sha256: Optional[str] = None
    verify: bool = True


@dataclass(frozen=True)
class Endpoint:
    """Where the server of a started container listens, as seen from this host.

    Either ``unix_socket`` is set (a path on this host), or ``host``/``port``
    (``scheme`` ``"https"`` with ``tls``).  ``path_prefix`` is put before every
    path (a proxy such as the Kubernetes API server's), and ``headers`` are
    sent with every request; when they hold an ``Authorization`` header, the
    Rayfine token travels as ``X-Rayfine-Token`` instead.
    """

    host: str = "127.0.0.1"
    port: Optional[int] = None
    unix_socket: Optional[str] = None
    scheme: str = "http"
    path_prefix: str = ""
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    tls: Optional[TLSConfig] = None

    def __str__(self) -> str:
        if self.unix_socket:
            return f"unix:{self.unix_socket}"
        return f"{self.scheme}://{self.host}:{self.port}{self.path_prefix}"


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
    """Resource limits for one container; ``None`` means no limit."""

    mem_limit: Optional[str] = None
    """Memory cap, e.g. ``"512m"`` or ``"2g"``."""
    cpu_limit: Optional[float] = None
    """Number of CPUs, e.g. ``0.5``."""
    pids_limit: Optional[int] = None
    """Maximum number of processes/threads."""


@dataclass(frozen=True)
class Mount:
    """A host directory to show inside the container (``StartRequest.mounts``).

    :param source: absolute path of a directory on this host.
    :param target: absolute path inside the container (it hides what the image has there).
    :param read_only: the container cannot write to it (the only kind Rayfine asks for today).
    """

    source: Path
    target: str
    read_only: bool = True


@dataclass
class StartRequest:
    """One container to start, handed to :meth:`Runtime.start`.

    :param image: image reference (must exist where the runtime runs it).
    :param name: container name (unique).
    :param env: environment variables for the container.  They may hold
        secrets: never log them, never put them where others can read them.
    :param labels: labels to set; the core adds ownership labels and
        ``rayfine.runtime``.
    :param container_port: port the server listens on inside the container.
    :param host_port: host port to publish on 127.0.0.1 (None: any free one).
    :param run_dir: a private host directory to mount at :data:`RUN_MOUNT`
        (runtimes with the ``unix_socket`` capability): it holds the token file
        and, when ``env`` names it, the server's Unix socket.
    :param network: engine network mode; ``"none"`` cuts the container off.
    :param limits: resource limits.
    :param cap_add: capabilities to keep (all others are dropped).
    :param command: override the image's command (None: image default).
    :param token: the server's token; runtimes without ``run_dir`` deliver it
        as a file of their own and point ``RAYFINE_TOKEN_FILE`` at it.
    :param user: ``uid:gid`` to run as (None: the image's user).
    :param isolation: ``"container"`` or another level the runtime declares
        in ``Capabilities.isolation`` (e.g. ``"gvisor"``).
    :param options: runtime-specific settings passed through untouched
        (e.g. Kubernetes ``namespace``, ``node_selector``, ``tolerations``).
    :param start_timeout: how long the caller waits for the server to answer; a runtime
        that waits itself (scheduling, pulling) stays within it.
    :param mounts: host directories to mount (runtimes with the ``mounts``
        capability); dev mode mounts the environment directory read-only at ``/app``.
    """

    image: str
    name: str
    env: dict[str, str] = field(default_factory=dict, repr=False)
    labels: dict[str, str] = field(default_factory=dict)
    container_port: int = 8000
    host_port: Optional[int] = None
    run_dir: Optional[Path] = None
    network: Optional[str] = None
    limits: Limits = field(default_factory=Limits)
    cap_add: tuple[str, ...] = ()
    command: Optional[list[str]] = None
    token: Optional[str] = field(default=None, repr=False)
    user: Optional[str] = SERVER_USER
    isolation: str = "container"
    options: dict[str, Any] = field(default_factory=dict)
    start_timeout: Optional[float] = None
    mounts: tuple[Mount, ...] = ()

    def socket_endpoint(self) -> Optional[Endpoint]:
        """Where the server listens on the host when serving over a Unix socket, else None."""
        if self.run_dir is None or "RAYFINE_UDS" not in self.env:
            return None
        return Endpoint(unix_socket=str(self.run_dir / SOCKET_NAME))


@dataclass(frozen=True)
class ContainerHandle:
    """A started container as a runtime knows it."""

    id: str
    name: str
    endpoint: Endpoint
    runtime: str


@dataclass(frozen=True)
class ContainerState:
    """What :meth:`Runtime.health` reports about a container.

    ``status`` is the engine's word (``running``, ``exited``, ``paused``,
    ``created``, ...) or ``"removed"`` when the container no longer exists.
    """

    running: bool
    exit_code: Optional[int] = None
    oom_killed: bool = False
    status: str = ""

    @property
    def paused(self) -> bool:
        return self.status == "paused"


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
