"""The blocking public functions: load an environment, reach a detached one, manage the active ones."""

from __future__ import annotations

import inspect
import os
from typing import Any, Callable, Iterable, Mapping, Optional, Union, cast

from . import errors
from .egress.policy import EgressPolicy
from .environment import registry, statefiles
from .environment.faces import Environment, warn_hidden_methods
from .environment.life import Life
from .environment.options import DEFAULT_MEM_LIMIT, DEFAULT_PIDS_LIMIT, EnvOptions
from .environment.steps import run
from .plugins.manager import get_manager, get_runtime
from .runtime.base import Runtime
from .runtime.types import SERVER_USER, EnvType, Limits


def load_env(
    image: str,
    mode: str = "local",
    container_name: Optional[str] = None,
    http_port: Optional[int] = None,
    env_vars: Optional[Mapping[str, Any]] = None,
    env_type: EnvType | str | None = None,
    runtime: str = "docker",
    *,
    start_timeout: float = 60.0,
    mem_limit: Optional[str] = DEFAULT_MEM_LIMIT,
    cpu_limit: Optional[float] = None,
    pids_limit: Optional[int] = DEFAULT_PIDS_LIMIT,
    network: Optional[str] = None,
    cap_add: tuple[str, ...] = (),
    transport: str = "auto",
    restart: bool = False,
    labels: Optional[Mapping[str, str]] = None,
    user: Optional[str] = SERVER_USER,
    isolation: str = "container",
    egress: Optional[Iterable[str] | EgressPolicy] = None,
    max_sessions: Optional[int] = None,
    session_idle_timeout: Optional[float] = None,
    runtime_options: Optional[Mapping[str, Any]] = None,
    url: Optional[str] = None,
    token: Optional[str] = None,
    eager: bool = False,
    dev: Optional[Union[str, os.PathLike[str]]] = None,
) -> Environment:
    """Start a container from ``image`` and return the environment running in it.

    :param image: an image built by :func:`build_image_from_env` (or, with
        ``env_type="http_based"``, any image whose CMD serves a FastAPI app).
    :param mode: ``"local"``: run the container with a runtime of this host;
        ``"remote"``: on the gateway at ``url`` (``rayfine serve`` on another host),
        which then picks the runtime; the environment behaves the same.
    :param container_name: container name (default ``rayfine-<image>-<id>``).
    :param http_port: publish the server on this 127.0.0.1 port (default: a
        private Unix socket for function-based envs, any free port otherwise).
    :param env_vars: environment variables for the container (secrets welcome:
        they are never logged).
    :param env_type: override the image's ``rayfine.env_type`` label.
    :param runtime: which runtime plugin runs the container, by name.
    :param start_timeout: seconds to wait for the server to answer.
    :param mem_limit: memory cap such as ``"1g"`` (None: no cap).
    :param cpu_limit: CPUs (None: no cap).
    :param pids_limit: max processes and threads (None: no cap).
    :param network: engine network mode; ``"none"`` cuts the container off.
    :param cap_add: Linux capabilities to keep (all are dropped by default).
    :param transport: ``"auto"``, ``"unix"`` or ``"tcp"``.
    :param restart: start a fresh container when the old one dies mid-call.
    :param labels: extra container labels.
    :param user: ``uid:gid`` (or name) the server runs as; ``"root"`` for
        environments that need it, None for the image's own user.
    :param isolation: ``"container"`` (runc, the host's kernel) or ``"gvisor"`` (gVisor's
        user-space kernel: no network device; see the README's security section).
    :param egress: an allow-list of hosts (``"api.example.com"``, ``"*.models.example"``,
        ``"host:8443"``): the container gets no network of its own and reaches the outside
        only through Rayfine's proxy, and only those hosts.
    :param max_sessions: sessions (``env.session()``) one container may hold at once
        (default: the Actor's ``max_sessions`` attribute, else 1).
    :param session_idle_timeout: seconds without a call after which the server closes a
        session (default 600).
    :param runtime_options: settings only this runtime understands (passed through).
    :param url: mode="remote": the gateway, ``https://HOST:PORT#sha256=FINGERPRINT``
        (default ``RAYFINE_REMOTE_URL``).
    :param token: mode="remote": this client's token (default ``RAYFINE_REMOTE_TOKEN``).
    :param eager: construct the ``Actor`` while starting, so that an ``Actor.__init__``
        that raises (a missing env var, a missing file) fails ``load_env`` with
        :class:`~rayfine_core.errors.ActorInitError` and the remote traceback, not the
        first call.
    :param dev: an environment directory: it is mounted read-only over ``/app`` and the
        server reloads env.py when it changes, so edits are live without a rebuild. The
        image must have the directory's dependencies (any image built from it; see
        :func:`~rayfine_core.build.dev.build_dev_image`).
    :raises ValidationError: a bad argument (before any engine work).
    :raises ImageNotFoundError: the image is not there (Rayfine never pulls).
    :raises StartError: the container could not start (``EnvLoadError``: env.py
        failed to import; ``StartTimeout``: the server never answered).
    :raises ActorInitError: with ``eager=True``, ``Actor()`` raised in the container.
    :raises EngineUnavailableError: the engine cannot be reached.
    """
    options = options_from(locals())  # locals(): exactly the parameters
    life = Life(options, runtime_for(options))
    env = Environment(life)
    run(life.start())
    warn_hidden_methods(env)
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
        user=a["user"],
        isolation=a["isolation"],
        egress=a["egress"],
        max_sessions=a["max_sessions"],
        session_idle_timeout=a["session_idle_timeout"],
        runtime_options=dict(a["runtime_options"] or {}),
        url=a.get("url"),
        token=a.get("token"),
        eager=a["eager"],
        dev=a["dev"],
    )


def runtime_for(options: EnvOptions) -> Runtime:
    """The runtime an environment runs on: by name, or in remote mode the one for its gateway.

    :raises UnknownRuntimeError: remote mode without the ``remote`` runtime installed.
    """
    if options.mode != "remote":
        return get_runtime(options.runtime)
    manager = get_manager()
    found = manager.runtime_registry()
    if "remote" not in found:
        raise errors.UnknownRuntimeError("remote", list(found), manager.load_errors)
    factory = cast(Callable[..., Runtime], found["remote"].spec.factory)
    return factory(url=options.url, token=options.token)  # one per gateway and token


def bind_options(*args: Any, **kwargs: Any) -> EnvOptions:
    """Validated settings from arguments given as :func:`load_env` takes them."""
    try:
        bound = inspect.signature(load_env).bind(*args, **kwargs)
    except TypeError as exc:
        raise errors.ValidationError(f"{exc}; see help(load_env).") from None
    bound.apply_defaults()
    return options_from(bound.arguments)


def attach(name_or_id: str, runtime: Optional[str] = None) -> Environment:
    """Reconnect to a detached environment, by container name, env id, or container-id prefix.

    The environment is not bound to this process: it keeps running when the
    process exits, unless you call ``cleanup()`` (which stops it and deletes
    its state file).

    :param name_or_id: what ``rayfine run`` printed, or the ``container_name``.
    :param runtime: only look at environments of this runtime.
    :raises UnknownEnvironmentError: nothing detached by that name, or its
        container is gone (its stale state file is then deleted).
    :raises ContainerDiedError: the container exists but has stopped.
    """
    record = statefiles.find(name_or_id, runtime)
    options = EnvOptions(
        image=record.image,
        runtime=record.runtime,
        container_name=record.name,
        env_type=record.env_type,
    )
    life = Life(options, get_runtime(record.runtime), env_id=record.env_id)
    env = Environment(life)
    run(life.attach(record))
    warn_hidden_methods(env)
    return env


def list_active_environments() -> list[str]:
    """Ids of the environments this process has started and not cleaned up."""
    return registry.ids()


def get_environment(env_id: str) -> Environment:
    """The active blocking environment with this id (raises UnknownEnvironmentError)."""
    face = registry.get(env_id).face
    if not isinstance(face, Environment):
        raise errors.UnknownEnvironmentError(
            f"{env_id!r} is an async environment; use aget_environment()."
        )
    return face


def cleanup_all_environments() -> int:
    """Stop every environment this process started; return how many."""
    return registry.stop_all("cleanup")
