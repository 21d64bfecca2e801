"""One container of an environment: planned, started in the background, stopped.

An environment has one container at a time (a restart replaces it).  The
container is *tracked before the engine is asked to create it*: its name
and env-id label are known, and the engine's start runs in a worker thread
whose outcome is always collected, so whatever interrupts the caller
(Ctrl-C, a signal, a cancelled task) the container it may have created can
be found and removed.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, cast

from .. import egress, errors
from ..plugins.manager import get_manager, get_runtime
from ..runtime import labels
from ..runtime.base import Capabilities, Runtime, engine_timeout
from ..runtime.reaper import owner_labels
from ..runtime.types import (
    RUN_MOUNT,
    SOCKET_NAME,
    TOKEN_NAME,
    ContainerHandle,
    EnvType,
    Limits,
    StartRequest,
)
from ..transport.channel import Channel
from . import rundir
from .options import DEFAULT_PIDS_LIMIT, EnvOptions
from .steps import engine_pool

log = logging.getLogger("rayfine")
LOG_TAIL = 40
RETRY_PAUSE = 0.5


def runtime_for(options: EnvOptions) -> Runtime:
    """The runtime an environment runs on: by name, or in remote mode the one for its gateway.

    :raises UnknownRuntimeError: the runtime is not installed (remote mode: ``rayfine-remote``).
    """
    if options.mode != "remote":
        return get_runtime(options.runtime)
    manager = get_manager()
    found = manager.runtime_registry()
    if "remote" not in found:
        raise errors.UnknownRuntimeError("remote", list(found), manager.load_errors)
    factory = cast(Callable[..., Runtime], found["remote"].spec.factory)
    return factory(url=options.url, token=options.token)  # one per gateway and token


@dataclass
class Container:
    """A container of one environment: how it was asked for, and how to reach it once started."""

    request: StartRequest
    env_type: EnvType
    token: Optional[str] = field(default=None, repr=False)
    run_dir: Optional[Path] = None
    handle: Optional[ContainerHandle] = None
    channel: Optional[Channel] = None
    egress: Optional[egress.EgressAttachment] = None
    _start: Optional[concurrent.futures.Future[ContainerHandle]] = field(default=None, repr=False)
    _asked: bool = field(default=False, repr=False)
    """Set just before the engine is asked: a signal may land before ``_start`` is set."""

    @property
    def env_id(self) -> str:
        return self.request.labels[labels.ENV_ID]

    def describe(self) -> str:
        return f"container {self.request.name}"


def new_env_id() -> str:
    return secrets.token_hex(6)


def container_name(image: str, env_id: str) -> str:
    """The default name: ``rayfine-<image name>-<env id>``."""
    base = image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
    return f"rayfine-{re.sub(r'[^a-zA-Z0-9_.-]', '-', base)[:40] or 'env'}-{env_id}"


def plan(
    options: EnvOptions, runtime: Runtime, env_id: str, name: str, image_labels: dict[str, str]
) -> Container:
    """Decide everything about the container (without creating it) and let plugins adjust it.

    :raises ValidationError: the image is not a Rayfine image and no env_type was given,
        or the runtime cannot do what was asked.
    :raises PluginError: a ``rayfine_start`` hook refused.
    """
    env_type = options.env_type or _labelled_type(options.image, image_labels)
    # Rayfine's server answers in the container: function-based images, and http-based ones
    # Rayfine built (its server in front of the app); others are reached as they are.
    served = env_type is EnvType.FUNCTION_BASED or image_labels.get(labels.SERVED) == "1"
    caps = runtime.capabilities
    if options.isolation not in caps.isolation:
        raise errors.ValidationError(
            f"Runtime {runtime.name!r} offers isolation {sorted(caps.isolation)},"
            f" not {options.isolation!r}."
        )
    limits = _limits_for(options.limits, runtime.capabilities_for(options.isolation))
    request = StartRequest(
        image=options.image,
        name=name,
        env=dict(options.env_vars),
        labels={**options.labels, **owner_labels(env_id, runtime.name)},
        container_port=int(image_labels.get(labels.SERVER_PORT, 8000)),
        host_port=options.http_port,
        network=options.network,
        limits=limits,
        cap_add=options.cap_add,
        user=options.user if env_type is EnvType.FUNCTION_BASED else None,  # an app: its own
        isolation=options.isolation,
        options=dict(options.runtime_options),
        start_timeout=options.start_timeout,
        mounts=options.mounts(),
    )
    options.check_dev(env_type, runtime.name, caps.mounts)
    container = Container(request, env_type)
    if options.max_sessions is not None:
        request.env["RAYFINE_MAX_SESSIONS"] = str(options.max_sessions)
    if options.session_idle_timeout is not None:
        request.env["RAYFINE_SESSION_IDLE_TIMEOUT"] = str(options.session_idle_timeout)
    if served:
        container.token = request.token = secrets.token_urlsafe(32)
        request.env.update(options.server_env())
    if options.isolation != "container" or options.egress is not None:
        request.network = "none"  # gVisor has no network device; egress is the only way out
    if caps.unix_socket and served:
        _use_run_dir(container, options)
    if options.egress is not None:
        _use_egress(container, options.egress, runtime)
    try:
        get_manager().modify("rayfine_start", request=request, runtime=runtime.name)
    except BaseException:
        release(container)
        raise
    return container


def _limits_for(limits: Limits, caps: Capabilities) -> Limits:
    """``limits`` without the *default* process cap where the runtime cannot apply one.

    The default is a safety net, not a request; asked for explicitly, the
    runtime refuses it with the reason.
    """
    if not caps.pids_limit and limits.pids_limit == DEFAULT_PIDS_LIMIT:
        return dataclasses.replace(limits, pids_limit=None)
    return limits


def _use_egress(container: Container, policy: egress.EgressPolicy, runtime: Runtime) -> None:
    if container.run_dir is None:
        raise errors.ValidationError(
            f"egress=[...] needs a host run directory, which runtime {runtime.name!r} has not"
            " (Capabilities.unix_socket), or an image whose server Rayfine built."
        )
    container.egress = egress.attach(container.run_dir, policy, container.env_id)
    container.request.env.update(egress.container_env())


def release(container: Container) -> None:
    """Drop what the host holds for ``container``: its egress socket and its run directory."""
    if container.egress is not None:
        container.egress.close()
        container.egress = None
    if container.run_dir is not None:
        rundir.remove(container.run_dir)


def _use_run_dir(container: Container, options: EnvOptions) -> None:
    request = container.request
    container.run_dir = request.run_dir = rundir.create(container.env_id)
    assert container.token is not None
    rundir.write_token(container.run_dir, container.token)
    request.env["RAYFINE_TOKEN_FILE"] = f"{RUN_MOUNT}/{TOKEN_NAME}"
    if options.transport == "unix" or (options.transport == "auto" and options.http_port is None):
        request.env["RAYFINE_UDS"] = f"{RUN_MOUNT}/{SOCKET_NAME}"


def _labelled_type(image: str, image_labels: dict[str, str]) -> EnvType:
    value = image_labels.get(labels.ENV_TYPE)
    if not value:
        raise errors.ValidationError(
            f"Image {image!r} was not built by Rayfine (no {labels.ENV_TYPE} label). Pass"
            " env_type='http_based' for an image whose CMD serves a FastAPI app, or build it with"
            " build_image_from_env()."
        )
    return EnvType(value)


# -- starting and stopping ----------------------------------------------------------------


def begin_start(runtime: Runtime, container: Container) -> None:
    """Ask the engine to start ``container`` in a worker thread; :func:`await_start` collects it."""
    container._asked = True
    container._start = engine_pool().submit(_start_with_retry, runtime, container.request)


def await_start(container: Container) -> ContainerHandle:
    """Wait for the start begun by :func:`begin_start`; connect the channel.

    The wait (not the engine call) is what Ctrl-C or a signal interrupts.
    """
    assert container._start is not None
    container.handle = container._start.result()
    container.channel = Channel(container.handle.endpoint, container.token)
    return container.handle


def _start_with_retry(runtime: Runtime, request: StartRequest) -> ContainerHandle:
    """Start, retrying once if the engine hiccups, after removing what a lost reply created."""
    try:
        return runtime.start(request)
    except errors.EngineUnavailableError:
        time.sleep(RETRY_PAUSE)
        remove_by_label(runtime, request.labels[labels.ENV_ID])
        return runtime.start(request)


def remove_by_label(runtime: Runtime, env_id: str) -> int:
    """Remove every container of this runtime carrying ``env_id``; return how many."""
    found = runtime.list_containers({labels.ENV_ID: env_id, labels.RUNTIME: runtime.name})
    for record in found:
        runtime.stop(record.id, timeout=0)
    return len(found)


def remove(runtime: Runtime, container: Container, timeout: float) -> None:
    """Stop and remove ``container``, whatever state its start is in; drop its run directory.

    A start still in flight is waited for first (the engine call is bounded
    by its deadline), so nothing it creates is left behind.

    :raises EngineUnavailableError: the engine cannot be reached (retry later).
    :raises RuntimeFailure: the engine refused to remove it.
    """
    handle = container.handle
    start = container._start
    if handle is None and start is not None:
        try:
            handle = start.result(timeout=2 * engine_timeout() + RETRY_PAUSE)
        except Exception:
            # Still running, or failed. (A failure may itself be a TimeoutError, such as a
            # runtime's StartTimeout: only the future knows which case this is.)
            if not start.done():
                raise errors.EngineUnavailableError(
                    f"The engine has not finished starting {container.describe()}; try again."
                ) from None
            handle = None  # the start failed; what it may have created is found by label
    if handle is not None:
        runtime.stop(handle.id, timeout=timeout)
    elif container._asked and container._start is None:
        _sweep_until_found(runtime, container.env_id)  # interrupted while asking: may yet appear
    else:
        remove_by_label(runtime, container.env_id)  # whatever a failed or lost start left
    if container.channel is not None:
        container.channel.close()
    release(container)


def _sweep_until_found(runtime: Runtime, env_id: str, patience: float = 5.0) -> None:
    """Remove by label until the container turns up and is removed, or ``patience`` runs out."""
    deadline = time.monotonic() + patience
    while remove_by_label(runtime, env_id) == 0 and time.monotonic() < deadline:
        time.sleep(0.2)


def logs_of(runtime: Runtime, container: Container) -> str:
    """The container's last lines of output, or "" when it cannot be had."""
    if container.handle is None:
        return ""
    try:
        return runtime.logs(container.handle.id, LOG_TAIL)
    except errors.RayfineError:
        return ""
