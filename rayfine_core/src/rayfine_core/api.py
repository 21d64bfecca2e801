"""The public functions: build an image, load an environment, manage the active ones."""

from __future__ import annotations

import time
from typing import Any, Mapping, Optional

from . import errors, lifecycle, registry
from .environment import Environment
from .options import EnvOptions
from .plugins import get_plugin_manager
from .types import EnvType, Limits


def load_env(
    image: str,
    mode: str = "local",
    container_name: Optional[str] = None,
    http_port: Optional[int] = None,
    env_vars: Optional[Mapping[str, Any]] = None,
    env_type: "EnvType | str | None" = None,
    runtime: str = "docker",
    *,
    start_timeout: float = 60.0,
    mem_limit: Optional[str] = None,
    cpu_limit: Optional[float] = None,
    pids_limit: Optional[int] = None,
    network: Optional[str] = None,
    cap_add: tuple[str, ...] = (),
    transport: str = "auto",
    restart: bool = False,
    labels: Optional[Mapping[str, str]] = None,
) -> Environment:
    """Start a container from ``image`` and return the environment running in it.

    :param image: an image built by :func:`build_image_from_env` (or, with
        ``env_type="http_based"``, any image whose CMD serves a FastAPI app).
    :param mode: ``"local"``: run the container on this host's engine.
    :param container_name: container name (default ``rayfine-<image>-<id>``).
    :param http_port: publish the server on this 127.0.0.1 port (default: a
        private Unix socket for function-based envs, any free port otherwise).
    :param env_vars: environment variables for the container (secrets welcome:
        they are never logged).
    :param env_type: override the image's ``rayfine.env_type`` label.
    :param runtime: which runtime plugin runs the container, by name.
    :param start_timeout: seconds to wait for the server to answer.
    :param mem_limit: memory cap such as ``"1g"``; ``cpu_limit``: CPUs;
        ``pids_limit``: max processes.
    :param network: engine network mode; ``"none"`` cuts the container off.
    :param cap_add: Linux capabilities to keep (all are dropped by default).
    :param transport: ``"auto"``, ``"unix"`` or ``"tcp"``.
    :param restart: start a fresh container when the old one dies mid-call.
    :param labels: extra container labels.
    """
    options = EnvOptions(
        image=image, runtime=runtime, mode=mode, container_name=container_name, http_port=http_port,
        env_vars=env_vars,  # type: ignore[arg-type]  # validated by EnvOptions
        env_type=env_type,  # type: ignore[arg-type]
        start_timeout=start_timeout, limits=Limits(mem_limit, cpu_limit, pids_limit), network=network,
        cap_add=tuple(cap_add), transport=transport, restart=restart, labels=dict(labels or {}),
    )
    launch = lifecycle.prepare(options)
    env = Environment(options, launch)
    registry.add(env)  # registered before starting: Ctrl-C during start still cleans up
    started = time.perf_counter()
    try:
        lifecycle.start(launch)
        env._client = env._client or _client_for(launch)
        env.wait_ready(options.start_timeout)
        env._load_methods()
    except BaseException as exc:
        _report_health(launch, started, exc)
        env.stop_container("failed-start")
        raise
    _report_health(launch, started, None)
    return env


def _client_for(launch: lifecycle.Launch) -> Any:
    from .client import Client

    assert launch.handle is not None
    return Client(launch.handle.endpoint, launch.token)


def _report_health(launch: lifecycle.Launch, started: float, error: Optional[BaseException]) -> None:
    if launch.handle is not None:
        elapsed = time.perf_counter() - started
        get_plugin_manager().hook.rayfine_health(handle=launch.handle, ready=error is None, elapsed=elapsed, error=error)


def list_active_environments() -> list[str]:
    """Ids of the environments this process has started and not cleaned up."""
    return registry.ids()


def get_environment(env_id: str) -> Environment:
    """The active environment with this id (raises UnknownEnvironmentError)."""
    env = registry.get(env_id)
    if not isinstance(env, Environment):
        raise errors.UnknownEnvironmentError(f"{env_id!r} is an async environment; use aget_environment().")
    return env


def cleanup_all_environments() -> int:
    """Stop every environment this process started; return how many."""
    return registry.cleanup_all("cleanup")
