"""The hooks a Rayfine plugin can implement.

A plugin is a module (registered under the ``rayfine`` entry-point group)
with functions decorated by :data:`hookimpl`.  Runtimes are collected by
name through :func:`rayfine_runtimes`.  The other hooks take part in every
environment's life:

* ``rayfine_build`` / ``rayfine_start`` change a request before it runs
  (a hook that raises stops the build or start: it may be a policy);
* ``rayfine_call`` wraps each method call (time, trace, retry, refuse);
* ``rayfine_health`` / ``rayfine_stop`` observe: one that raises is logged
  and never changes what the user sees.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generator, Iterable, Mapping, Optional, Sequence

import pluggy

if TYPE_CHECKING:
    from ..runtime.types import (
        BuildRequest,
        ContainerHandle,
        RuntimeSpec,
        ServerSpec,
        StartRequest,
    )

PROJECT = "rayfine"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@dataclass
class CallInfo:
    """One method call, as ``rayfine_call`` wrappers see it.

    :param env_id: the environment's id.
    :param handle: the container serving it (None for calls to a remote gateway
        that hides containers).
    :param method: the method's name.
    :param args: positional arguments (do not change them in place).
    :param kwargs: keyword arguments.
    :param timeout: the call's timeout in seconds, or None.
    :param session: the session id, or None for the default instance.
    :param attempt: 1 for the first run, 2 after a wrapper's first retry, ...
    :param extra: free room for wrappers to pass notes to each other.
    """

    env_id: str
    handle: Optional[ContainerHandle]
    method: str
    args: Sequence[Any]
    kwargs: Mapping[str, Any]
    timeout: Optional[float]
    session: Optional[str] = None
    attempt: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


@hookspec
def rayfine_runtimes() -> Iterable[RuntimeSpec]:  # type: ignore[empty-body]  # a spec: no body
    """Declare the container runtimes this plugin provides.

    :return: an iterable of :class:`~rayfine_core.runtime.RuntimeSpec`; each
        ``name`` must be unique across all installed plugins.

    Example::

        @hookimpl
        def rayfine_runtimes():
            yield RuntimeSpec(name="docker", factory=DockerRuntime,
                              description="Docker Engine via the docker SDK")
    """


@hookspec
def rayfine_servers() -> Iterable[ServerSpec]:  # type: ignore[empty-body]
    """Declare the in-image servers this plugin provides (see :class:`~rayfine_core.runtime.ServerSpec`).

    Rayfine's own, ``python`` (the ``rayfine-server`` distribution), serves an
    env.py; a third party may ship one for environments of another kind.

    Example::

        @hookimpl
        def rayfine_servers():
            yield ServerSpec(name="tiny", files=lambda: {"tiny.py": HERE / "tiny.py"},
                             command=("python3", "/opt/rayfine/site/tiny.py"))
    """


@hookspec
def rayfine_build(request: BuildRequest, runtime: str) -> None:
    """Called before each image build; may change the request in place.

    Raising stops the build with a :class:`~rayfine_core.errors.PluginError`.

    :param request: the build about to run (tag, build args, labels, context).
    :param runtime: name of the runtime that will build it.

    Example::

        @hookimpl
        def rayfine_build(request, runtime):
            request.labels["org.example.team"] = "rl"
    """


@hookspec
def rayfine_start(request: StartRequest, runtime: str) -> None:
    """Called before each container starts; may change the request in place.

    Raising refuses the start with a :class:`~rayfine_core.errors.PluginError`
    (nothing has been created yet).

    :param request: the container about to start (image, env, labels, limits).
        ``request.env`` may hold secrets: never log it.
    :param runtime: name of the runtime that will start it.

    Example::

        @hookimpl
        def rayfine_start(request, runtime):
            request.labels["org.example.team"] = "rl"
    """


@hookspec
def rayfine_health(
    handle: ContainerHandle, ready: bool, elapsed: float, error: Optional[BaseException]
) -> None:
    """Observe a started container becoming ready, or failing to.

    :param handle: the container.
    :param ready: True if its server answered the health check.
    :param elapsed: seconds from start request to this outcome.
    :param error: the error the caller will see when not ready, else None.

    Example::

        @hookimpl
        def rayfine_health(handle, ready, elapsed, error):
            metrics.histogram("rayfine.start_seconds", elapsed)
    """


@hookspec
def rayfine_call(call: CallInfo) -> Generator[None, Any, Any]:  # type: ignore[empty-body]
    """Wrap every method call: a generator that yields once to run the call.

    ``result = yield`` runs the call (or the next wrapper) and gives its
    result, or raises its error into the wrapper; what the wrapper returns
    is what the caller gets.  To refuse a call, raise before yielding; to
    retry, catch the error and yield again (``call.attempt`` counts).
    Wrappers run on the caller's thread or event loop: keep them fast and
    never block.

    Example::

        @hookimpl(wrapper=True)
        def rayfine_call(call):
            started = time.perf_counter()
            try:
                return (yield)
            finally:
                log.info("%s took %.3fs", call.method, time.perf_counter() - started)
    """


@hookspec
def rayfine_stop(handle: ContainerHandle, reason: str) -> None:
    """Observe an environment's container being stopped and removed.

    :param handle: the container that was stopped.
    :param reason: ``"cleanup"``, ``"exit"`` (interpreter exit or signal),
        ``"restart"`` or ``"failed-start"``.

    Example::

        @hookimpl
        def rayfine_stop(handle, reason):
            print(f"stopped {handle.name} ({reason})")
    """
