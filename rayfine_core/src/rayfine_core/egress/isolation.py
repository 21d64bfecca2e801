"""Isolation levels for environments: what each engine needs to run a container under gVisor.

``isolation="container"`` is a plain runc container on the host's kernel.
``isolation="gvisor"`` runs it under gVisor's ``runsc``, a user-space kernel:
the environment's system calls are served by gVisor, not by the host.
``scripts/install-gvisor.sh`` sets the engines up; :func:`gvisor_available`
tells whether that was done, and how to fix it if not.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from dataclasses import replace
from typing import Any, Mapping, Optional

from ..errors import StartError, ValidationError
from ..runtime.base import Capabilities

ISOLATION_LEVELS = ("container", "gvisor")
DOCKER_RUNTIME = "runsc"
"""The runtime name ``install-gvisor.sh`` registers in Docker's daemon.json."""
RUNSC_WRAPPER = "/usr/local/libexec/rayfine/runsc"
"""runsc with Rayfine's flags; Podman containers record this path as their runtime."""
REQUIRED_FLAGS = ("--network=none", "--host-uds=all")
PODMAN_GVISOR_SOCKET = os.environ.get(
    "RAYFINE_PODMAN_GVISOR_SOCKET", "/run/podman/podman-runsc.sock"
)
"""The Podman API service whose default runtime is :data:`RUNSC_WRAPPER`."""
FIX = "run: sudo bash scripts/install-gvisor.sh"


GVISOR_LACKS: Mapping[str, str] = {
    "network": "gVisor containers have no network device (runsc runs with --network=none);"
    " let them out through egress=[...]",
    "host_ports": "nothing can be published without a network device; gVisor environments"
    " use the Unix-socket transport",
    "pids_limit": "under gVisor pids_limit bounds gVisor's own host threads, not the"
    " environment's processes: exceeding it kills the whole sandbox (exit code 2), and values"
    " under about 40 keep it from starting",
}
"""Capabilities that do not hold under gVisor, and why (measured: runsc 20221219, ptrace).

Memory and CPU limits, the user, the run-dir mount (both directions of Unix
sockets), logs and exit codes work as with runc; Docker reports the OOM flag,
Podman 4.3 on cgroup v1 does not (as with runc).
"""


def gvisor_capabilities(capabilities: Capabilities) -> Capabilities:
    """``capabilities`` as they hold under gVisor (see :data:`GVISOR_LACKS`)."""
    # An http-based app serves a TCP port, which cannot be reached without a network device.
    return replace(
        capabilities, host_ports=False, pids_limit=False, network_none=True, http_apps=False
    )


def check_isolation(value: str) -> str:
    """``value`` if it names an isolation level, else :class:`ValidationError`."""
    if value not in ISOLATION_LEVELS:
        raise ValidationError(
            f"isolation={value!r} is not known. Choose one of: {', '.join(ISOLATION_LEVELS)}."
        )
    return value


def validate_gvisor_options(
    network: Optional[str], host_port: Optional[int], pids_limit: Optional[int]
) -> None:
    """Refuse, with the reason, options that cannot work under gVisor."""
    if network not in (None, "none"):
        raise ValidationError(
            f"network={network!r} with isolation='gvisor': {GVISOR_LACKS['network']}"
        )
    if host_port is not None:
        raise ValidationError(f"http_port with isolation='gvisor': {GVISOR_LACKS['host_ports']}")
    if pids_limit is not None:
        raise ValidationError(
            f"pids_limit with isolation='gvisor': {GVISOR_LACKS['pids_limit']}."
            " Drop it, or use isolation='container'."
        )


def docker_create_options(isolation: str) -> dict[str, Any]:
    """Extra keyword arguments for docker-py's ``containers.run``/``create``.

    gVisor containers get no network device (runsc runs with
    ``--network=none``), so ``network_mode="none"`` is set to say so to Docker
    too; callers must not publish ports for them.
    """
    if check_isolation(isolation) == "container":
        return {}
    return {"runtime": DOCKER_RUNTIME, "network_mode": "none"}


def podman_service_url(isolation: str) -> Optional[str]:
    """The Podman API service to *create* the container through (None: the usual one).

    Podman 4.3's API ignores a per-container runtime (containers/podman#28429),
    so gVisor containers are created through a service whose default runtime
    is runsc.  Inspect, logs, stop and remove work through either service.
    Pass ``network_mode="none"`` and no ports for them, as for Docker.
    """
    if check_isolation(isolation) == "container":
        return None
    return f"unix://{PODMAN_GVISOR_SOCKET}"


def check_started_under_gvisor(engine: str, inspect: Mapping[str, Any]) -> None:
    """Raise :class:`StartError` unless the inspected container runs under gVisor.

    Call it between create and start: a misconfigured engine silently
    falling back to runc must not run untrusted code on the host kernel.
    """
    if engine == "docker":
        runtime = (inspect.get("HostConfig") or {}).get("Runtime")
        ok = runtime == DOCKER_RUNTIME
    else:
        runtime = inspect.get("OCIRuntime")
        ok = runtime == RUNSC_WRAPPER
    if not ok:
        raise StartError(
            f"{engine} created the container with runtime {runtime!r}, not gVisor; it was not"
            f" started. To set gVisor up, {FIX}"
        )


def gvisor_available(engine: str, docker_client: Any = None) -> Optional[str]:
    """None if ``engine`` can run gVisor containers the way Rayfine needs, else why not and the fix.

    :param engine: ``"docker"`` or ``"podman"``.
    :param docker_client: a docker-py client to ask (default: one from the environment).
    """
    if engine == "docker":
        return _docker_reason(docker_client)
    if engine == "podman":
        return _podman_reason()
    return f"gVisor is supported on docker and podman, not on {engine!r}"


def _docker_reason(client: Any) -> Optional[str]:
    try:
        if client is None:
            import docker

            client = docker.from_env(timeout=10)
        runtimes = client.info().get("Runtimes") or {}
    except Exception as exc:  # docker-py raises many kinds; any means "cannot ask"
        return f"cannot ask docker for its runtimes ({type(exc).__name__}); is dockerd running?"
    entry = runtimes.get(DOCKER_RUNTIME)
    if entry is None:
        return f"docker has no '{DOCKER_RUNTIME}' runtime; {FIX}"
    missing = [f for f in REQUIRED_FLAGS if f not in (entry.get("runtimeArgs") or [])]
    if missing and entry.get("path") != RUNSC_WRAPPER:
        return (
            f"docker's '{DOCKER_RUNTIME}' runtime lacks {' '.join(missing)} (needed for the"
            f" Unix-socket transport and egress); {FIX} --replace"
        )
    return None


def _podman_reason() -> Optional[str]:
    if not os.access(RUNSC_WRAPPER, os.X_OK):
        return f"{RUNSC_WRAPPER} is missing; {FIX}"
    try:
        info = _podman_info(PODMAN_GVISOR_SOCKET)
    except (OSError, ValueError, http.client.HTTPException):
        return f"the podman gVisor service does not answer on {PODMAN_GVISOR_SOCKET}; {FIX}"
    runtime = ((info.get("host") or {}).get("ociRuntime") or {}).get("path")
    if runtime != RUNSC_WRAPPER:
        return (
            f"the podman service on {PODMAN_GVISOR_SOCKET} runs containers with {runtime!r},"
            f" not {RUNSC_WRAPPER}; stop it and {FIX}"
        )
    return None


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.path)
        self.sock = sock


def _podman_info(path: str, timeout: float = 5.0) -> dict[str, Any]:
    conn = _UnixHTTPConnection(path, timeout)
    try:
        conn.request("GET", "/v4.0.0/libpod/info")
        response = conn.getresponse()
        if response.status != 200:
            raise ValueError(f"HTTP {response.status}")
        data = json.loads(response.read())
    finally:
        conn.close()
    if not isinstance(data, dict):
        raise ValueError("unexpected answer")
    return data
