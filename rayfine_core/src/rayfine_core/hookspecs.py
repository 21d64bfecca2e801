"""The hooks a Rayfine plugin can implement.

A plugin is a module (registered under the ``rayfine`` entry-point group)
with functions decorated by :data:`hookimpl`.  Runtimes are collected by
name through :func:`rayfine_runtimes`; the other hooks let any plugin
take part in the build, start, health, call and stop stages of every
environment (add labels or build args, inject settings, record metrics).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Optional

import pluggy

if TYPE_CHECKING:
    from .types import BuildRequest, ContainerHandle, RuntimeSpec, StartRequest

hookspec = pluggy.HookspecMarker("rayfine")
hookimpl = pluggy.HookimplMarker("rayfine")


@hookspec
def rayfine_runtimes() -> Iterable["RuntimeSpec"]:  # type: ignore[empty-body]  # a spec: no body
    """Declare the container runtimes this plugin provides.

    :return: an iterable of :class:`~rayfine_core.types.RuntimeSpec`; each
        ``name`` must be unique across all installed plugins.

    Example::

        @hookimpl
        def rayfine_runtimes():
            yield RuntimeSpec(name="docker", factory=DockerRuntime,
                              description="Docker Engine via the docker SDK")
    """


@hookspec
def rayfine_build(request: "BuildRequest", runtime: str) -> None:
    """Called before each image build; may change the request in place.

    :param request: the build about to run (tag, build args, labels, context).
    :param runtime: name of the runtime that will build it.

    Example::

        @hookimpl
        def rayfine_build(request, runtime):
            request.labels["org.example.team"] = "rl"
    """


@hookspec
def rayfine_start(request: "StartRequest", runtime: str) -> None:
    """Called before each container starts; may change the request in place.

    :param request: the container about to start (image, env, labels, limits).
        ``request.env`` may hold secrets: never log it.
    :param runtime: name of the runtime that will start it.

    Example::

        @hookimpl
        def rayfine_start(request, runtime):
            request.limits.pids_limit = request.limits.pids_limit or 512
    """


@hookspec
def rayfine_health(
    handle: "ContainerHandle", ready: bool, elapsed: float, error: Optional[BaseException]
) -> None:
    """Called once a started container is ready, or has failed to become ready.

    :param handle: the container.
    :param ready: True if its server answered the health check.
    :param elapsed: seconds from start request to this outcome.
    :param error: the error that will be raised when not ready, else None.

    Example::

        @hookimpl
        def rayfine_health(handle, ready, elapsed, error):
            metrics.histogram("rayfine.start_seconds", elapsed)
    """


@hookspec
def rayfine_call(
    handle: "ContainerHandle", method: str, elapsed: float, error: Optional[BaseException]
) -> None:
    """Called after each method call on an environment, successful or not.

    Runs on the caller's thread/event loop: keep it fast and non-blocking.

    :param handle: the container that served the call.
    :param method: method name.
    :param elapsed: seconds the call took, including transport.
    :param error: the exception the caller will see, or None on success.

    Example::

        @hookimpl
        def rayfine_call(handle, method, elapsed, error):
            log.info("%s.%s took %.3fs", handle.name, method, elapsed)
    """


@hookspec
def rayfine_stop(handle: "ContainerHandle", reason: str) -> None:
    """Called after an environment's container has been stopped and removed.

    :param handle: the container that was stopped.
    :param reason: ``"cleanup"``, ``"exit"`` (interpreter exit or signal),
        ``"restart"`` or ``"failed-start"``.

    Example::

        @hookimpl
        def rayfine_stop(handle, reason):
            print(f"stopped {handle.name} ({reason})")
    """
