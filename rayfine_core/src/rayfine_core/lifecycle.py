"""Starting a container for an environment and deciding when it is ready.

Shared by the blocking and the asyncio API: everything here that touches the
engine is a plain blocking function (the async API runs it in a thread), and
the readiness decision is separated from the polling loop.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from . import errors, labels, reaper
from .options import EnvOptions
from .plugins import get_plugin_manager, get_runtime
from .runtime import Runtime
from .types import SOCKET_MOUNT, SOCKET_NAME, ContainerHandle, EnvType, StartRequest

if TYPE_CHECKING:
    from .wire import Response

_PROCESS_START = reaper.own_start_time()
LOG_TAIL = 40


@dataclass
class Launch:
    """A container about to start, or started, with what it takes to reach it."""

    env_id: str
    runtime: Runtime
    request: StartRequest
    env_type: EnvType
    token: Optional[str]
    handle: Optional[ContainerHandle] = None


def prepare(options: EnvOptions, env_id: Optional[str] = None) -> Launch:
    """Resolve the runtime, the environment type and the container settings."""
    rt = get_runtime(options.runtime)
    reaper.reap_once(rt, socket_root())
    image_labels = rt.image_labels(options.image)
    env_type = options.env_type or _labelled_type(options.image, image_labels)
    env_id = env_id or secrets.token_hex(6)
    name = options.container_name or f"rayfine-{_slug(options.image)}-{env_id}"
    port = int(image_labels.get(labels.SERVER_PORT, 8000))
    request = StartRequest(
        image=options.image,
        name=name,
        env=dict(options.env_vars),
        container_port=port,
        host_port=options.http_port,
        network=options.network,
        limits=options.limits,
        cap_add=options.cap_add,
        labels={**options.labels, **ownership_labels(env_id)},
    )
    token = None
    if env_type is EnvType.FUNCTION_BASED:
        token = secrets.token_urlsafe(32)
        request.env["RAYFINE_TOKEN"] = token
        if _use_unix_socket(options):
            request.socket_dir = _socket_dir(env_id)
            request.env["RAYFINE_UDS"] = f"{SOCKET_MOUNT}/{SOCKET_NAME}"
    get_plugin_manager().hook.rayfine_start(request=request, runtime=rt.name)
    return Launch(env_id, rt, request, env_type, token)


def ownership_labels(env_id: str) -> dict[str, str]:
    """Labels that mark a container as ours and name the process that owns it."""
    return {
        labels.OWNER: labels.OWNER_VALUE,
        labels.ENV_ID: env_id,
        labels.PID: str(os.getpid()),
        labels.HOST: socket.gethostname(),
        labels.PROCESS_START: _PROCESS_START,
    }


def _labelled_type(image: str, image_labels: dict[str, str]) -> EnvType:
    value = image_labels.get(labels.ENV_TYPE)
    if not value:
        raise errors.ValidationError(
            f"Image {image!r} was not built by Rayfine (no {labels.ENV_TYPE} label). Pass"
            " env_type='http_based' for an image whose CMD serves a FastAPI app, or build it with"
            " build_image_from_env()."
        )
    return EnvType(value)


def _use_unix_socket(options: EnvOptions) -> bool:
    if options.transport != "auto":
        return options.transport == "unix"
    # A published port is what the caller asked for with http_port; otherwise a
    # socket is faster, needs no free port, and works with network="none".
    return options.http_port is None and os.name == "posix"


def socket_root() -> Path:
    """Private directory (0700) holding one socket directory per environment."""
    return (
        Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()) / f"rayfine-{os.getuid()}"
    )


def _socket_dir(env_id: str) -> Path:
    root = socket_root()
    root.mkdir(mode=0o700, exist_ok=True)
    path = root / env_id
    path.mkdir()
    path.chmod(0o777)  # the container's user (maybe not root) creates the socket here
    return path


def remove_socket_dir(launch: Launch) -> None:
    if launch.request.socket_dir is not None:
        shutil.rmtree(launch.request.socket_dir, ignore_errors=True)


def start(launch: Launch) -> ContainerHandle:
    """Start the container, retrying once if the engine hiccups."""
    try:
        launch.handle = launch.runtime.start(launch.request)
    except errors.EngineUnavailableError:
        time.sleep(0.5)
        launch.handle = launch.runtime.start(launch.request)
    return launch.handle


def _slug(image: str) -> str:
    name = image.rsplit("/", 1)[-1].split(":", 1)[0]
    return re.sub(r"[^a-zA-Z0-9_.-]", "-", name)[:40] or "env"


# -- readiness ------------------------------------------------------------------------


def health_paths(env_type: EnvType) -> tuple[str, ...]:
    """Paths that prove the server is up, tried in order."""
    return ("/health",) if env_type is EnvType.FUNCTION_BASED else ("/health", "/openapi.json")


def classify_health(response: "Response", env_type: EnvType) -> Optional[bool]:
    """True: ready.  None: try the next path.  Raise EnvLoadError if env.py failed to load."""
    if response.status_code == 200:
        return True
    if response.status_code == 503 and env_type is EnvType.FUNCTION_BASED:
        error = _json(response).get("error") or {}
        if error.get("kind") == "env_load_failed":
            raise errors.EnvLoadError(
                f"env.py failed to load in the container: {error.get('type')}: {error.get('message')}",
                logs=str(error.get("traceback") or ""),
            )
    if response.status_code == 401:
        raise errors.StartError(
            "The environment's server rejected the client token (was the image changed?)."
        )
    return None


def check_alive(launch: Launch) -> None:
    """Raise StartError with exit code and logs if the container has stopped."""
    assert launch.handle is not None
    state = launch.runtime.health(launch.handle.id)
    if not state.running:
        logs = launch.runtime.logs(launch.handle.id, LOG_TAIL)
        oom = ", out of memory" if state.oom_killed else ""
        raise errors.StartError(
            f"Container {launch.handle.name} exited before it became ready (exit code {state.exit_code}{oom})",
            logs,
            state.exit_code,
        )


def start_timeout_error(launch: Launch, timeout: float) -> errors.StartTimeout:
    assert launch.handle is not None
    logs = launch.runtime.logs(launch.handle.id, LOG_TAIL)
    return errors.StartTimeout(
        f"Container {launch.handle.name} did not become ready within {timeout:g}s"
        " (raise start_timeout= if it is just slow)",
        logs,
    )


def _json(response: "Response") -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
