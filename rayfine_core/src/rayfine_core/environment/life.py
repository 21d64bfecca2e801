"""The life of one environment, in one place: prepare -> start -> ready -> call -> (restart) -> stop.

:class:`Life` owns an environment's state and its current container.  Its
operations are *flows* (see :mod:`~rayfine_core.environment.steps`): the
blocking :class:`~rayfine_core.environment.faces.Environment` and the
asyncio :class:`~rayfine_core.environment.faces.AsyncEnvironment` run the
same flows and differ only in how they perform the I/O.

States::

    NEW --start--> STARTING --ready--> READY <--> RESTARTING
                      |                  |
                      +------------------+--stop--> STOPPING --removed--> CLOSED

Rules that hold on every path:

* the environment is registered (so exit and signals stop it) before the
  engine is asked to create its container;
* exactly one restart happens per container death, however many callers
  see it die: the first to report it restarts, the others get the typed
  error, and calls that arrive meanwhile wait for the new container;
* a stop that fails (engine down) leaves the environment registered and
  in STOPPING, so a second ``cleanup()`` or the exit hook retries it;
  calls meanwhile raise :class:`~rayfine_core.errors.EnvironmentClosedError`.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from .. import errors
from ..egress.stats import EgressStats
from ..plugins.hookspecs import CallInfo
from ..plugins.manager import get_manager
from ..runtime import labels
from ..runtime.base import Runtime, engine_timeout
from ..runtime.reaper import reap_in_background
from ..runtime.types import (
    ContainerHandle,
    ContainerState,
    EnvType,
    StartRequest,
)
from ..transport.channel import Channel
from ..transport.dialects import Dialect, Request, dialect_for, health_verdict
from ..transport.protocol import MethodInfo, decode_json, encode_json, error_from_response
from ..transport.wire import Response
from . import container as containers
from . import hostlimits, registry, rundir, statefiles
from .catalogue import Catalogue
from .container import Container
from .options import EnvOptions
from .steps import Flow, blocking, http, sleep
from .wrappers import wrapped

log = logging.getLogger("rayfine")

POLL_MAX = 0.05
"""Longest pause between readiness polls: a poll that finds no server costs a failed connect."""
ALIVE_EVERY = 0.5
"""Seconds between asking the engine whether a container that is not ready yet still runs."""
TIMEOUT_GRACE = 2.0
"""Extra seconds the client waits past a call's timeout for the server to report it."""
REMOVAL_GRACE = 0.25
"""Seconds to wait, once a container is seen exited, for it to turn out removed."""
PAUSED_LIMIT = 30.0
"""Seconds a call waits on a paused container before giving up."""
STOP_GRACE = 2.0
"""Seconds ``cleanup()`` gives the server to exit on SIGTERM before the engine kills it."""
LARGE_ANSWER = 1 << 20
"""Answers larger than this are decoded in a worker thread (off the event loop)."""


class State(enum.Enum):
    NEW = "new"
    STARTING = "starting"
    READY = "ready"
    RESTARTING = "restarting"
    STOPPING = "stopping"
    CLOSED = "closed"


class Life:
    """One environment: its settings, state, current container and methods."""

    def __init__(self, options: EnvOptions, runtime: Runtime, env_id: Optional[str] = None):
        self.options = options
        self.runtime = runtime
        self.env_id = env_id or containers.new_env_id()
        self.name = options.container_name or containers.container_name(options.image, self.env_id)
        self._face: Optional[weakref.ref[Any]] = None
        self._state = State.NEW
        # Guards state changes; never held across a step.  Re-entrant: a signal handler
        # (stop_all) may run in a thread that holds it.
        self._lock = threading.RLock()
        self._current: Optional[Container] = None
        self._broken: Optional[BaseException] = None
        """Why the environment has no usable container (it died, or a restart failed)."""
        self._env_type: Optional[EnvType] = options.env_type
        self._dialect: Optional[Dialect] = None
        self._catalogue = Catalogue()
        self._state_file: Optional[Path] = None
        self._paused_since: Optional[float] = None

    # -- what the faces show ------------------------------------------------------------
    @property
    def face(self) -> object:
        """The Environment or AsyncEnvironment made around this life (set by it).  Held weakly:
        the registry keeps lives, and a face nobody holds must be collectable (it then stops)."""
        return None if self._face is None else self._face()

    @face.setter
    def face(self, value: object) -> None:
        self._face = weakref.ref(value)

    @property
    def state(self) -> State:
        return self._state

    @property
    def env_type(self) -> EnvType:
        if self._env_type is None:
            raise errors.EnvironmentClosedError(f"Environment {self.env_id} has not started.")
        return self._env_type

    @property
    def handle(self) -> ContainerHandle:
        container = self._current
        if container is None or container.handle is None:
            raise errors.EnvironmentClosedError(f"Environment {self.env_id} has no container.")
        return container.handle

    def current_container(self) -> Container:
        """The container in use now (sessions remember which one they live in)."""
        container = self._current
        if container is None or self._state is not State.READY:
            raise errors.EnvironmentClosedError(f"Environment {self.env_id} has no container.")
        return container

    @property
    def catalogue(self) -> Catalogue:
        return self._catalogue

    def __repr__(self) -> str:
        return (
            f"<Life {self.env_id} {self.name} image={self.options.image!r}"
            f" runtime={self.runtime.name} {self._state.value}>"
        )

    # -- start ------------------------------------------------------------------------
    def start(self) -> Flow[None]:
        """Start a container and wait until its server answers; any failure removes it."""
        with self._lock:
            if self._state is not State.NEW:
                raise errors.ValidationError(f"Environment {self.env_id} was started already.")
            self._state = State.STARTING
        try:
            registry.add(self)
        except errors.EnvironmentClosedError:
            with self._lock:
                self._state = State.CLOSED
            raise
        reap_in_background(self.runtime, rundir.forget, statefiles.is_detached)
        started = time.perf_counter()
        container: Optional[Container] = None
        try:
            yield from hostlimits.admit(self.env_id)  # host-wide start/running slots (may wait)
            container = yield from self._launch()
            yield from self._become_ready(container)
        except BaseException as exc:
            yield from blocking(self._abandon, container, started, exc)
            raise
        finally:
            hostlimits.started(self.env_id)
        with self._lock:
            if self._state is State.STARTING:
                self._state = State.READY
        assert container.handle is not None
        get_manager().notify(
            "rayfine_health",
            handle=container.handle,
            ready=True,
            elapsed=time.perf_counter() - started,
            error=None,
        )

    def _launch(self) -> Flow[Container]:
        """Plan the container, track it, ask the engine to start it, wait for the handle."""
        labels_of_image = yield from blocking(self.runtime.image_labels, self.options.image)
        planned = yield from blocking(  # plugins' start hooks and file I/O: off the event loop
            containers.plan, self.options, self.runtime, self.env_id, self.name, labels_of_image
        )
        self._env_type = planned.env_type
        self._dialect = dialect_for(planned.env_type)
        with self._lock:  # tracked before the engine is asked: stop() always finds it
            if self._state not in (State.STARTING, State.RESTARTING):
                containers.release(planned)
                raise self._closed_during("the start")
            self._current = planned
            containers.begin_start(self.runtime, planned)
        yield from blocking(containers.await_start, planned)
        return planned

    def _become_ready(self, container: Container) -> Flow[None]:
        yield from self._wait_ready(container, self.options.start_timeout)
        yield from self._load_methods(container)

    def _abandon(
        self, container: Optional[Container], started: float, error: BaseException
    ) -> None:
        """A start failed: report it, remove the container, leave the registry."""
        if container is not None and container.handle is not None:
            get_manager().notify(
                "rayfine_health",
                handle=container.handle,
                ready=False,
                elapsed=time.perf_counter() - started,
                error=error,
            )
        self.stop_blocking("failed-start")

    def _wait_ready(self, container: Container, timeout: float) -> Flow[None]:
        """Poll until the server answers; fail fast if the container dies first."""
        now = time.monotonic()
        deadline, next_alive_check = now + timeout, now + ALIVE_EVERY
        delay = 0.005
        while not (yield from self._probe(container, timeout=2.0)):
            now = time.monotonic()
            if now > next_alive_check or now > deadline:
                yield from blocking(self._check_alive, container)
                next_alive_check = now + ALIVE_EVERY
            if now > deadline:
                logs = yield from blocking(containers.logs_of, self.runtime, container)
                raise errors.StartTimeout(
                    f"{container.describe().capitalize()} did not become ready within"
                    f" {timeout:g}s (raise start_timeout= if it is just slow)",
                    logs,
                )
            yield from sleep(delay)
            delay = min(delay * 1.5, POLL_MAX)

    def _probe(self, container: Container, timeout: float) -> Flow[bool]:
        """One round of health checks: False while nothing answers."""
        assert container.channel is not None and self._dialect is not None
        for path in self._dialect.health_paths:
            try:
                response = yield from http(container.channel, Request("GET", path), timeout)
            except (errors.TransportError, errors.CallTimeout):
                return False  # not listening yet
            if health_verdict(response):
                return True
        return False

    def _check_alive(self, container: Container) -> None:
        """Raise StartError with exit code and logs if the container has stopped."""
        assert container.handle is not None
        state = self.runtime.health(container.handle.id)
        if not state.running:
            oom = ", out of memory" if state.oom_killed else ""
            raise errors.StartError(
                f"{container.describe().capitalize()} exited before it became ready"
                f" (exit code {state.exit_code}{oom})",
                containers.logs_of(self.runtime, container),
                state.exit_code,
            )

    def _load_methods(self, container: Container) -> Flow[None]:
        assert container.channel is not None and self._dialect is not None
        response = yield from http(
            container.channel, Request("GET", self._dialect.methods_path), 10.0
        )
        if response.status_code == 200:
            self._catalogue = Catalogue(self._dialect.parse_methods(response.json()))

    # -- calls ------------------------------------------------------------------------
    def call(
        self,
        method: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        timeout: Optional[float],
        session: Optional[str] = None,
    ) -> Flow[Any]:
        """Call ``method`` in the container, through the plugins' call wrappers."""
        if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
            raise errors.ValidationError(
                f"timeout must be a positive number of seconds, got {timeout!r}."
            )
        container = yield from self._serving(method)
        try:
            info = self._catalogue.check(self.env_type, method, args, kwargs)
        except (errors.MethodNotFoundError, errors.InvalidArgumentsError):
            if self.options.dev is None:
                raise
            yield from self._load_methods(container)  # dev mode: the code may have changed
            info = self._catalogue.check(self.env_type, method, args, kwargs)
        assert self._dialect is not None
        request = self._dialect.request(info, method, args, kwargs, timeout, session)
        call = CallInfo(self.env_id, container.handle, method, args, kwargs, timeout, session)
        return (
            yield from wrapped(
                get_manager().call_wrappers(), call, lambda: self._attempt(method, request, timeout)
            )
        )

    def _attempt(self, method: str, request: Request, timeout: Optional[float]) -> Flow[Any]:
        """Send one call to the current container; diagnose a failure; restart if asked to."""
        container = yield from self._serving(method)
        assert container.channel is not None and self._dialect is not None
        read_timeout = None if timeout is None else timeout + TIMEOUT_GRACE
        try:
            response = yield from http(
                container.channel, request, read_timeout, self._watch(container, method)
            )
        except errors.TransportError as exc:
            error: BaseException = yield from self._diagnose(container, method, exc)
            if isinstance(error, errors.ContainerDiedError):
                yield from self._after_death(container, error)
            raise error from (None if error is exc else exc)
        except errors.ContainerDiedError as died:  # the watch saw it die, no connection dropped
            yield from self._after_death(container, died)
            raise
        return (yield from self._decode(response, method))

    def _after_death(self, dead: Container, error: errors.ContainerDiedError) -> Flow[None]:
        """Replace the dead container (``restart=True``), or remove it and remember why."""
        if self.options.restart:
            yield from self._restart_after(dead)
            return
        with self._lock:
            if self._state is not State.READY or self._current is not dead or self._broken:
                return  # another caller saw it first, or it is being stopped
            self._broken = error
        yield from blocking(self._remove_quietly, dead)  # its log tail is in the error

    def _decode(self, response: Response, method: str) -> Flow[Any]:
        assert self._dialect is not None
        if len(response.content) > LARGE_ANSWER:  # keep a big decode off the event loop
            return (
                yield from blocking(
                    self._dialect.decode, response.status_code, response.content, method
                )
            )
        return self._dialect.decode(response.status_code, response.content, method)

    def _serving(self, method: str) -> Flow[Container]:
        """The container to call, waiting out a restart in progress."""
        deadline = time.monotonic() + self.options.start_timeout + 2 * engine_timeout()
        while True:
            with self._lock:
                state, container, broken = self._state, self._current, self._broken
            if state in (State.STOPPING, State.CLOSED):
                raise errors.EnvironmentClosedError(
                    f"Environment {self.env_id} was cleaned up; load it again to call {method}()."
                )
            if broken is not None:
                first_line = str(broken).splitlines()[0]
                raise errors.ContainerDiedError(
                    f"Environment {self.env_id} has no container any more ({first_line});"
                    f" {method}() cannot run. Load a new one, or pass restart=True.",
                    None,
                    False,
                )
            if state is State.READY and container is not None and container.channel is not None:
                return container
            if state is not State.RESTARTING or time.monotonic() > deadline:
                raise errors.EnvironmentClosedError(
                    f"Environment {self.env_id} is {state.value}; {method}() cannot run now."
                )
            yield from sleep(0.02)

    def _watch(self, container: Container, method: str) -> Callable[[], None]:
        """What a call checks while its answer is late: is the container still there?"""

        def watch() -> None:
            if self._state in (State.STOPPING, State.CLOSED):
                raise self._closed_during(method)
            assert container.handle is not None
            state = self.runtime.health(container.handle.id)
            if not state.running or state.status == "removed":
                raise self._died(container, method, state)
            if not state.paused:
                self._paused_since = None
                return
            now = time.monotonic()
            self._paused_since = self._paused_since or now
            if now - self._paused_since > PAUSED_LIMIT:
                raise errors.ContainerPausedError(
                    f"{container.describe().capitalize()} has been paused for over"
                    f" {PAUSED_LIMIT:g}s while {method}() waited; unpause it"
                    " (docker/podman unpause) or clean the environment up."
                )

        return watch

    def _closed_during(self, method: str) -> errors.EnvironmentClosedError:
        return errors.EnvironmentClosedError(
            f"Environment {self.env_id} was cleaned up while {method}() was in flight."
        )

    def _diagnose(
        self, container: Container, method: str, cause: errors.TransportError
    ) -> Flow[BaseException]:
        """After a transport failure: what the caller should see.

        The connection drops a moment before the engine marks the container
        exited, so its state is polled for up to :data:`DIED_GRACE` seconds.
        """
        assert container.handle is not None
        deadline = time.monotonic() + self.runtime.capabilities.death_grace
        while True:
            if self._state in (State.STOPPING, State.CLOSED):
                return self._closed_during(method)
            try:
                state = yield from blocking(self.runtime.health, container.handle.id)
            except errors.RayfineError as exc:
                log.debug("rayfine: health of %s unknown: %s", self.name, exc)
                return cause
            if not state.running and state.status != "removed":
                # Someone removing it (docker rm -f) shows it exited a moment before it is gone.
                yield from sleep(REMOVAL_GRACE)
                again = yield from blocking(self.runtime.health, container.handle.id)
                state = again if again.status == "removed" else state
            if not state.running or state.status == "removed":
                return (yield from blocking(self._died, container, method, state))
            if cause.connect_failed:  # running, yet nothing listens: the server is gone
                return errors.ContainerDiedError(
                    f"The server in {container.describe()} (environment {self.env_id}) stopped"
                    f" accepting connections during {method}(); the container still runs",
                    None,
                    False,
                    containers.logs_of(self.runtime, container),
                )
            if time.monotonic() > deadline:
                return cause
            yield from sleep(0.05)

    def _died(
        self, container: Container, method: str, state: ContainerState
    ) -> errors.ContainerDiedError:
        where = f"{container.describe()} of environment {self.env_id}"
        if state.status == "removed":
            return errors.ContainerDiedError(
                f"The {where} was removed by something other than this environment (another"
                f" process, `docker rm`, a reaper) during {method}()",
                None,
                False,
            )
        how = "" if state.exit_code is not None or not state.status else f" ({state.status})"
        return errors.ContainerDiedError(
            f"The {where} stopped during {method}(){how}",
            state.exit_code,
            state.oom_killed,
            containers.logs_of(self.runtime, container),
        )

    # -- restart ----------------------------------------------------------------------
    def _restart_after(self, dead: Container) -> Flow[None]:
        """With ``restart=True``, replace ``dead`` once, whoever else saw it die."""
        if not self.options.restart:
            return
        with self._lock:
            if self._state is not State.READY or self._current is not dead:
                return  # another caller restarts (or restarted) it, or it is being stopped
            self._state = State.RESTARTING
        log.info("rayfine: restarting environment %s after its container died", self.env_id)
        fresh: Optional[Container] = None
        try:
            yield from blocking(containers.remove, self.runtime, dead, 0)
            fresh = yield from self._launch()
            yield from self._wait_ready(fresh, self.options.start_timeout)
            if self._state_file is not None:  # detached: the CLI and attach() must find it
                yield from blocking(self._write_state_file)
        except BaseException as exc:
            with self._lock:
                self._broken = exc
                if self._state is State.RESTARTING:
                    self._state = State.READY
            if fresh is not None:
                yield from blocking(self._remove_quietly, fresh)
            raise
        with self._lock:
            if self._state is State.RESTARTING:
                self._state = State.READY
        if dead.handle is not None:
            get_manager().notify("rayfine_stop", handle=dead.handle, reason="restart")

    def _remove_quietly(self, container: Container) -> None:
        try:
            containers.remove(self.runtime, container, 0)
        except errors.RayfineError as exc:
            log.warning("rayfine: could not remove %s: %s", container.describe(), exc)

    # -- sessions -------------------------------------------------------------------------
    def open_session(
        self,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        timeout: Optional[float],
        idle_timeout: Optional[float],
    ) -> Flow[tuple[str, Container]]:
        """Construct a fresh ``Actor(*args, **kwargs)`` in the container: its id and container.

        :raises SessionCapacityError: the container holds ``max_sessions`` already.
        :raises ActorInitError: the constructor raised (the container keeps serving).
        """
        container = yield from self._serving("session")
        if self.env_type is not EnvType.FUNCTION_BASED:
            raise errors.ValidationError("Sessions need a function-based environment (an Actor).")
        body: dict[str, Any] = {"args": list(args), "kwargs": dict(kwargs)}
        if timeout is not None:
            body["timeout"] = timeout
        if idle_timeout is not None:
            body["idle_timeout"] = idle_timeout
        request = Request("POST", "/sessions", encode_json(body, "Actor"))
        answer = yield from self._session_request(container, request, timeout, "Actor")
        return str(answer["session"]), container

    def close_session(self, session: str, container: Container) -> Flow[None]:
        """End a session (its ``Actor.close()`` runs); already ended or gone is fine."""
        if container is not self._current or self._state in (State.STOPPING, State.CLOSED):
            return  # its container is gone, and the session with it
        request = Request("DELETE", f"/sessions/{session}")
        try:
            yield from self._session_request(container, request, 30.0, "close")
        except (errors.UnknownSessionError, errors.SessionClosedError):
            pass

    def list_sessions(self) -> Flow[list[dict[str, Any]]]:
        """The container's open sessions: id, created, last_used, calls, in_flight, idle_timeout."""
        container = yield from self._serving("sessions")
        answer = yield from self._session_request(
            container, Request("GET", "/sessions"), 10.0, "sessions"
        )
        return list(answer.get("sessions") or [])

    def session_call(
        self,
        session: str,
        container: Container,
        method: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        timeout: Optional[float],
    ) -> Flow[Any]:
        """Call ``method`` on a session's Actor; a session dies with its container."""
        if container is not self._current and self._state is State.READY:
            raise errors.SessionClosedError(
                f"Session {session} lived in a container of environment {self.env_id} that"
                " was replaced (restart=True); open a new session."
            )
        return (yield from self.call(method, args, kwargs, timeout, session))

    def _session_request(
        self, container: Container, request: Request, timeout: Optional[float], what: str
    ) -> Flow[dict[str, Any]]:
        assert container.channel is not None
        read_timeout = None if timeout is None else timeout + TIMEOUT_GRACE
        response = yield from http(container.channel, request, read_timeout)
        try:
            payload = decode_json(response.content) if response.content else {}
        except ValueError:
            payload = None
        if 200 <= response.status_code < 300 and isinstance(payload, dict):
            return payload
        raise error_from_response(response.status_code, payload, response.content, what)

    # -- other operations ---------------------------------------------------------------
    def list_methods(self) -> Flow[list[MethodInfo]]:
        if not self._catalogue:
            container = yield from self._serving("list_methods")
            yield from self._load_methods(container)
        return self._catalogue.all()

    def is_ready(self) -> Flow[bool]:
        """Whether the server answers its health check now."""
        container = self._current
        if self._state is not State.READY or container is None or container.channel is None:
            return False
        try:
            return (yield from self._probe(container, timeout=5.0))
        except errors.RayfineError:
            return False

    def logs(self, tail: int) -> str:
        """The container's last ``tail`` lines of output (blocking)."""
        return self.runtime.logs(self.handle.id, tail)

    def egress_stats(self) -> Optional[EgressStats]:
        """The egress proxy's counters for the current container (None without egress)."""
        container = self._current
        if container is None or container.egress is None:
            return None
        return container.egress.stats()

    # -- stop -------------------------------------------------------------------------
    def stop(self, reason: str = "cleanup") -> Flow[None]:
        """Stop and remove the container; idempotent, and retried by a later call if it fails."""
        yield from blocking(self.stop_blocking, reason)

    def stop_blocking(self, reason: str = "cleanup") -> None:
        """:meth:`stop` for callers that may block (exit hooks, signal handlers, worker threads).

        :raises EngineUnavailableError: the engine is unreachable; the environment
            stays registered and a later call (or the exit hook) tries again.
        """
        with self._lock:
            if self._state is State.CLOSED:
                return
            self._state = State.STOPPING
            container = self._current
        if container is not None:
            containers.remove(self.runtime, container, STOP_GRACE if reason == "cleanup" else 0)
        with self._lock:
            if self._state is State.CLOSED:
                return
            self._state = State.CLOSED
        registry.discard(self.env_id)
        hostlimits.release(self.env_id)
        if self._state_file is not None:
            self._state_file.unlink(missing_ok=True)
        if container is not None and container.handle is not None:
            get_manager().notify("rayfine_stop", handle=container.handle, reason=reason)

    # -- detach / attach --------------------------------------------------------------
    def detach(self) -> Path:
        """Leave this process's registry and record how to reach the container (blocking)."""
        if self._state is not State.READY:
            raise errors.EnvironmentClosedError(
                f"Environment {self.env_id} is {self._state.value}; there is nothing to detach."
            )
        path = self._write_state_file()
        container = self._current
        if container is not None and container.egress is not None:  # must outlive this process
            container.egress.detach(statefiles.state_dir().parent / "egress" / f"{self.env_id}.log")
        registry.discard(self.env_id)
        return path

    def _write_state_file(self) -> Path:
        container = self._current
        assert container is not None and container.handle is not None
        self._state_file = statefiles.write(
            statefiles.Detached(
                path=None,
                name=self.name,
                container_id=container.handle.id,
                env_id=self.env_id,
                image=self.options.image,
                runtime=self.runtime.name,
                env_type=self.env_type,
                endpoint=container.handle.endpoint,
                token=container.token,
                run_dir=container.run_dir,
                detached_at=time.time(),
            )
        )
        return self._state_file

    def attach(self, record: statefiles.Detached) -> Flow[None]:
        """Take over a detached container (its state file says how to reach it)."""
        state = yield from blocking(self.runtime.health, record.container_id)
        if not state.running:
            yield from blocking(self._refuse_attach, record, state)
        self._env_type = record.env_type
        self._dialect = dialect_for(record.env_type)
        handle = ContainerHandle(record.container_id, record.name, record.endpoint, record.runtime)
        self._current = Container(
            request=_placeholder_request(record),
            env_type=record.env_type,
            token=record.token,
            run_dir=record.run_dir,
            handle=handle,
            channel=Channel(record.endpoint, record.token),
        )
        self._state_file = record.path
        self._state = State.READY
        try:
            yield from self._load_methods(self._current)
        except errors.TransportError as exc:
            raise errors.TransportError(
                f"Detached environment {record.name!r} runs but does not answer at"
                f" {record.endpoint} ({exc}). `rayfine stop {record.name}` and run it again."
            ) from exc

    def _refuse_attach(self, record: statefiles.Detached, state: ContainerState) -> None:
        if state.status == "removed":
            statefiles.forget(record)
            raise errors.UnknownEnvironmentError(
                f"The container of detached environment {record.name!r} no longer exists;"
                " forgot its state file."
            )
        raise errors.ContainerDiedError(
            f"The container of detached environment {record.name!r} is not running (status"
            f" {state.status}); `rayfine logs {record.name}` shows why, `rayfine stop"
            f" {record.name}` removes it",
            state.exit_code,
            state.oom_killed,
            self.runtime.logs(record.container_id, containers.LOG_TAIL),
        )


def _placeholder_request(record: statefiles.Detached) -> StartRequest:
    return StartRequest(
        image=record.image,
        name=record.name,
        labels={labels.ENV_ID: record.env_id},
        run_dir=record.run_dir,
    )
