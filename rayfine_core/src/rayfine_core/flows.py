"""What starting, polling and calling an environment does, for both APIs.

Each function is a flow (see :mod:`rayfine_core.steps`): it yields the I/O
it needs and makes every decision itself, so :class:`~rayfine_core.Environment`
and :class:`~rayfine_core.AsyncEnvironment` share one implementation and
differ only in how they perform the steps.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

from . import errors, lifecycle, registry
from .plugins import get_plugin_manager
from .protocol import MethodInfo
from .steps import Engine, Flow, Http, Reconnect, Sleep

if TYPE_CHECKING:
    from .environment import BaseEnvironment

POLL_MAX = 0.05
"""Longest pause between readiness polls: a poll that finds no server costs a failed connect."""
ALIVE_EVERY = 0.5
"""Seconds between asking the engine whether a container that is not ready yet still runs."""


def start(env: "BaseEnvironment") -> Flow[None]:
    """Start the container of ``env`` (already prepared) and wait until it answers.

    The environment is registered first, so Ctrl-C (or a cancelled task)
    during the start still cleans it up; any failure stops the container.
    """
    registry.add(env)
    started = time.perf_counter()
    try:
        yield Engine(lifecycle.start, (env._launch,))
        yield Reconnect()
        yield from wait_ready(env, env._options.start_timeout)
        yield from load_methods(env)
        yield Engine(_report_health, (env._launch, started, None))
    except BaseException as exc:
        yield Engine(_fail_start, (env, started, exc))
        raise


def wait_ready(env: "BaseEnvironment", timeout: float) -> Flow[None]:
    """Poll until the server answers; fail fast if the container died."""
    launch = env._launch
    now = time.monotonic()
    deadline, next_alive_check = now + timeout, now + ALIVE_EVERY
    delay = 0.005
    while not (yield from _probe(env, timeout=2.0)):
        now = time.monotonic()
        if now > next_alive_check or now > deadline:
            yield Engine(lifecycle.check_alive, (launch,))
            next_alive_check = now + ALIVE_EVERY
        if now > deadline:
            raise (yield Engine(lifecycle.start_timeout_error, (launch, timeout)))
        yield Sleep(delay)
        delay = min(delay * 1.5, POLL_MAX)


def is_ready(env: "BaseEnvironment") -> Flow[bool]:
    """Whether the server answers its health check now."""
    if env.closed or env._launch.handle is None:
        return False
    try:
        return (yield from _probe(env, timeout=5.0))
    except errors.RayfineError:
        return False


def _probe(env: "BaseEnvironment", timeout: float) -> Flow[bool]:
    """One round of health checks: False while nothing answers; raises if env.py failed to load."""
    for path in lifecycle.health_paths(env.env_type):
        try:
            response = yield Http("GET", path, timeout=timeout)
        except (errors.TransportError, errors.CallTimeout):
            return False  # not listening yet
        if lifecycle.classify_health(response, env.env_type):
            return True
    return False


def load_methods(env: "BaseEnvironment") -> Flow[None]:
    response = yield Http("GET", env._dialect.methods_path)
    if response.status_code == 200:
        env._set_methods(response.json())


def list_methods(env: "BaseEnvironment") -> Flow[list[MethodInfo]]:
    if not env._methods:
        yield from load_methods(env)
    return list(env._methods.values())


def call(
    env: "BaseEnvironment",
    method: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    timeout: Optional[float],
) -> Flow[Any]:
    """Call ``method`` remotely; a dropped connection becomes ContainerDiedError if the container is gone."""
    path, body = env._prepare_call(method, args, kwargs, timeout)
    started = time.perf_counter()
    try:
        response = yield Http("POST", path, body, timeout)
        result = env._dialect.decode(response.status_code, response.content, method)
    except errors.TransportError as exc:
        error = yield from died_error(env, method, exc)
        env._report_call(method, started, error)
        yield from maybe_restart(env, error)
        raise error from (None if error is exc else exc)
    except BaseException as exc:
        env._report_call(method, started, exc)
        raise
    env._report_call(method, started, None)
    return result


def died_error(
    env: "BaseEnvironment", method: str, cause: BaseException, grace: float = 3.0
) -> Flow[BaseException]:
    """After a transport failure: a ContainerDiedError if the container is gone, else ``cause``.

    The connection drops a moment before the engine marks the container
    exited, so the state is polled for up to ``grace`` seconds.
    """
    runtime, handle = env._launch.runtime, env.handle
    deadline = time.monotonic() + grace
    while True:
        try:
            state = yield Engine(runtime.health, (handle.id,))
        except errors.RayfineError:
            return cause
        if not state.running:
            break
        if time.monotonic() > deadline:
            return cause
        yield Sleep(0.05)
    logs = yield Engine(runtime.logs, (handle.id, lifecycle.LOG_TAIL))
    return errors.ContainerDiedError(
        f"The container of environment {env.id} ({env.name}) stopped during {method}()",
        state.exit_code,
        state.oom_killed,
        logs,
    )


def maybe_restart(env: "BaseEnvironment", error: BaseException) -> Flow[None]:
    """With ``restart=True``, replace a dead container by a fresh one under the same id."""
    if not (env._options.restart and isinstance(error, errors.ContainerDiedError)):
        return
    old = env._launch
    env._launch = yield Engine(_replace_container, (env._options, old))
    yield Reconnect()
    yield from wait_ready(env, env._options.start_timeout)
    if (
        env._state_file is not None
    ):  # detached: `rayfine call` and attach() must find the new container
        yield Engine(_rewrite_state, (env,))
    if old.handle is not None:
        yield Engine(_report_stop, (old, "restart"))


def _rewrite_state(env: "BaseEnvironment") -> None:
    from .attach import write_state

    env._state_file = write_state(env)


def _replace_container(options: Any, old: lifecycle.Launch) -> lifecycle.Launch:
    if old.handle is not None:
        old.runtime.stop(old.handle.id, timeout=0)
    lifecycle.remove_socket_dir(old)
    fresh = lifecycle.prepare(options, env_id=old.env_id)
    lifecycle.start(fresh)
    return fresh


def _report_stop(launch: lifecycle.Launch, reason: str) -> None:
    get_plugin_manager().hook.rayfine_stop(handle=launch.handle, reason=reason)


def _fail_start(env: "BaseEnvironment", started: float, error: BaseException) -> None:
    try:
        _report_health(env._launch, started, error)
    finally:  # a failing hook must not leave the container running
        env.stop_container("failed-start")


def _report_health(
    launch: lifecycle.Launch, started: float, error: Optional[BaseException]
) -> None:
    if launch.handle is not None:
        elapsed = time.perf_counter() - started
        get_plugin_manager().hook.rayfine_health(
            handle=launch.handle, ready=error is None, elapsed=elapsed, error=error
        )
