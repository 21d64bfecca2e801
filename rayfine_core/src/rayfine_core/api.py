"""The public functions: build an image, load an environment, manage the active ones."""

from __future__ import annotations

import inspect
from typing import Any, Mapping, Optional

from . import errors, flows, lifecycle, registry, steps
from .environment import Environment
from .options import EnvOptions
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
    options = options_from(locals())  # locals() here: exactly the parameters above
    env = Environment(options, lifecycle.prepare(options))
    steps.run(flows.start(env), env)
    return env


def options_from(arguments: Mapping[str, Any]) -> EnvOptions:
    """Validated settings from :func:`load_env`'s parameters, by name (``aload_env`` shares them)."""
    a = arguments
    return EnvOptions(
        image=a["image"],
        runtime=a["runtime"],
        mode=a["mode"],
        container_name=a["container_name"],
        http_port=a["http_port"],
        env_vars=a["env_vars"],
        env_type=a["env_type"],
        start_timeout=a["start_timeout"],
        limits=Limits(a["mem_limit"], a["cpu_limit"], a["pids_limit"]),
        network=a["network"],
        cap_add=tuple(a["cap_add"]),
        transport=a["transport"],
        restart=a["restart"],
        labels=dict(a["labels"] or {}),
    )


def bind_options(*args: Any, **kwargs: Any) -> EnvOptions:
    """Validated settings from arguments given as :func:`load_env` takes them."""
    bound = inspect.signature(load_env).bind(*args, **kwargs)
    bound.apply_defaults()
    return options_from(bound.arguments)


def list_active_environments() -> list[str]:
    """Ids of the environments this process has started and not cleaned up."""
    return registry.ids()


def get_environment(env_id: str) -> Environment:
    """The active environment with this id (raises UnknownEnvironmentError)."""
    env = registry.get(env_id)
    if not isinstance(env, Environment):
        raise errors.UnknownEnvironmentError(
            f"{env_id!r} is an async environment; use aget_environment()."
        )
    return env


def cleanup_all_environments() -> int:
    """Stop every environment this process started; return how many."""
    return registry.cleanup_all("cleanup")
