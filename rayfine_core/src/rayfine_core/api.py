"""The blocking public functions: load an environment, reach a detached one, manage the active ones."""

from __future__ import annotations

import inspect
import os
from typing import Any, Iterable, Mapping, Optional, Union, overload

from . import errors
from .egress.policy import EgressPolicy
from .environment import registry, statefiles
from .environment.container import runtime_for
from .environment.faces import Environment, warn_hidden_methods
from .environment.life import Life
from .environment.options import DEFAULT_MEM_LIMIT, DEFAULT_PIDS_LIMIT, EnvOptions
from .environment.steps import run
from .plugins.manager import get_runtime
from .pool.progress import ProgressCallback
from .pool.replica_faces import Replicas
from .pool.settings import REPLICAS, WARM, FleetSettings, default_name
from .pool.warm_faces import Pool
from .runtime.types import SERVER_USER, EnvType, Limits


@overload
def load_env(
    image: str,
    mode: str = ...,
    container_name: Optional[str] = ...,
    http_port: Optional[int] = ...,
    env_vars: Optional[Mapping[str, Any]] = ...,
    env_type: EnvType | str | None = ...,
    runtime: str = ...,
    *,
    start_timeout: float = ...,
    mem_limit: Optional[str] = ...,
    cpu_limit: Optional[float] = ...,
    pids_limit: Optional[int] = ...,
    network: Optional[str] = ...,
    cap_add: tuple[str, ...] = ...,
    transport: str = ...,
    restart: bool = ...,
    labels: Optional[Mapping[str, str]] = ...,
    user: Optional[str] = ...,
    isolation: str = ...,
    egress: Optional[Iterable[str] | EgressPolicy] = ...,
    max_sessions: Optional[int] = ...,
    session_idle_timeout: Optional[float] = ...,
    runtime_options: Optional[Mapping[str, Any]] = ...,
    url: Optional[str] = ...,
    token: Optional[str] = ...,
    eager: bool = ...,
    dev: Optional[Union[str, os.PathLike[str]]] = ...,
    replicas: None = ...,
    load_balance: str = ...,
) -> Environment: ...


@overload
def load_env(
    image: str,
    mode: str = ...,
    container_name: Optional[str] = ...,
    http_port: Optional[int] = ...,
    env_vars: Optional[Mapping[str, Any]] = ...,
    env_type: EnvType | str | None = ...,
    runtime: str = ...,
    *,
    start_timeout: float = ...,
    mem_limit: Optional[str] = ...,
    cpu_limit: Optional[float] = ...,
    pids_limit: Optional[int] = ...,
    network: Optional[str] = ...,
    cap_add: tuple[str, ...] = ...,
    transport: str = ...,
    restart: bool = ...,
    labels: Optional[Mapping[str, str]] = ...,
    user: Optional[str] = ...,
    isolation: str = ...,
    egress: Optional[Iterable[str] | EgressPolicy] = ...,
    max_sessions: Optional[int] = ...,
    session_idle_timeout: Optional[float] = ...,
    runtime_options: Optional[Mapping[str, Any]] = ...,
    url: Optional[str] = ...,
    token: Optional[str] = ...,
    eager: bool = ...,
    dev: Optional[Union[str, os.PathLike[str]]] = ...,
    replicas: int,
    load_balance: str = ...,
) -> Replicas: ...


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
    replicas: Optional[int] = None,
    load_balance: str = "least_busy",
) -> Union[Environment, Replicas]:
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
    :param replicas: start this many containers and return a :class:`~rayfine_core.Replicas`
        that spreads calls over them (the same as :func:`load_replicas`).
    :param load_balance: with ``replicas``: ``"least_busy"``, ``"round_robin"`` or ``"random"``.
    :raises ValidationError: a bad argument (before any engine work).
    :raises ImageNotFoundError: the image is not there (Rayfine never pulls).
    :raises StartError: the container could not start (``EnvLoadError``: env.py
        failed to import; ``StartTimeout``: the server never answered).
    :raises ActorInitError: with ``eager=True``, ``Actor()`` raised in the container.
    :raises EngineUnavailableError: the engine cannot be reached.
    """
    options = options_from(locals())  # locals(): exactly the parameters
    if replicas is not None:  # affinetes' spelling of load_replicas()
        settings = FleetSettings(REPLICAS, default_name(image), replicas, health_interval=5.0)
        return Replicas.start(options, settings, load_balance)
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


def bind_options(*args: Any, **kwargs: Any) -> EnvOptions:
    """Validated settings from arguments given as :func:`load_env` takes them."""
    try:
        bound = inspect.signature(load_env).bind(*args, **kwargs)
    except TypeError as exc:
        raise errors.ValidationError(f"{exc}; see help(load_env).") from None
    if "replicas" in bound.arguments or "load_balance" in bound.arguments:
        raise errors.ValidationError(
            "replicas=/load_balance= belong to load_env() alone; use load_replicas() or"
            " aload_replicas() (or a pool's size=)."
        )
    bound.apply_defaults()
    return options_from(bound.arguments)


def load_pool(
    image: str,
    size: int,
    *,
    name: Optional[str] = None,
    reset: Optional[str] = None,
    max_uses: Optional[int] = None,
    max_envs: Optional[int] = None,
    max_starting: Optional[int] = None,
    health_interval: float = 10.0,
    wait: bool = True,
    timeout: Optional[float] = None,
    on_progress: Optional[ProgressCallback] = None,
    progress: Optional[bool] = None,
    **env_options: Any,
) -> Pool:
    """A warm pool: ``size`` environments of ``image`` kept started, handed out one at a time.

    ``pool.acquire()`` / ``with pool.env() as env`` gives a ready environment
    at once (checked to answer) and the pool starts its replacement; on
    release it is stopped (a fresh environment per episode), or with
    ``reset`` reused after ``env.<reset>()`` succeeds.  ``reset`` also runs
    on every fresh environment before its first hand-out, so its
    ``Actor.__init__`` (and the reset) are paid in the background.  Dead environments are
    replaced; failed starts back off exponentially.  ``pool.status()`` and
    ``rayfine pool status`` show its state; ``pool.close()`` (or ``with``)
    stops everything, as do exit and SIGTERM/SIGHUP/SIGINT.

    :param size: idle ready environments to keep (>= 1).
    :param name: the pool's name (its containers' ``rayfine.pool`` label);
        default ``<image name>-<6 hex>``.
    :param reset: a method (no arguments) run before every hand-out; released
        environments are then reused instead of replaced.
    :param max_uses: with ``reset``: hand one environment out at most this often.
    :param max_envs: most environments held at once, idle + starting + in use.
    :param max_starting: starts run at once (default ``RAYFINE_HOST_MAX_STARTS``).
    :param health_interval: seconds between checks of idle environments (0: none).
    :param wait: return only once ``size`` environments are ready.
    :param timeout: with ``wait``: give up after this many seconds (``CapacityError``).
    :param on_progress: called with a :class:`~rayfine_core.pool.Progress` on
        every change (from a Rayfine thread).
    :param progress: bar on stderr while waiting (None: if stderr is a terminal).
    :param env_options: :func:`load_env`'s settings for every environment.
    :raises ValidationError: a bad argument (before any engine work).
    :raises StartError: starts keep failing (or the start's own error, such as
        ``ImageNotFoundError``, when a retry cannot help).
    """
    settings = FleetSettings(
        WARM,
        name or default_name(image),
        size,
        max_starting=max_starting,
        max_envs=max_envs,
        health_interval=health_interval,
        reset=reset,
        max_uses=max_uses,
    )
    return Pool.start(
        bind_options(image, **env_options),
        settings,
        wait=wait,
        timeout=timeout,
        on_progress=on_progress,
        progress=progress,
    )


def load_replicas(
    image: str,
    replicas: int,
    *,
    load_balance: str = "least_busy",
    name: Optional[str] = None,
    max_starting: Optional[int] = None,
    health_interval: float = 5.0,
    timeout: Optional[float] = None,
    on_progress: Optional[ProgressCallback] = None,
    progress: Optional[bool] = None,
    **env_options: Any,
) -> Replicas:
    """One environment served by ``replicas`` containers; each call goes to one of them.

    The replicas start concurrently; this returns once all answer.  A call
    that could not reach its replica (connection refused: the container is
    gone) is sent to another; one in flight when its container died raises
    ``ContainerDiedError`` (it may have run).  Dead replicas are replaced
    while calls go to the others (so ``restart=`` is not used: a dead replica
    is replaced, not restarted).  ``pick()`` / ``hold()`` give the replica
    the balancer would choose, for work that must stay on one container.

    :param load_balance: ``"least_busy"`` (fewest calls in flight),
        ``"round_robin"`` or ``"random"``.
    :param timeout: give up starting after this many seconds (``CapacityError``).
    Other parameters as for :func:`load_pool`; ``env_options`` as for :func:`load_env`.
    """
    settings = FleetSettings(
        REPLICAS,
        name or default_name(image),
        replicas,
        max_starting=max_starting,
        health_interval=health_interval,
    )
    return Replicas.start(
        bind_options(image, **env_options),
        settings,
        load_balance,
        timeout=timeout,
        on_progress=on_progress,
        progress=progress,
    )


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
