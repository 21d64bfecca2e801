"""The object ``load_env`` returns: a running environment you call methods on.

``env.evaluate(task_type="sat")`` becomes an HTTP call to the container.
``timeout=`` is reserved on every method (it is not forwarded); use
:meth:`Environment.call_method` to pass an argument literally named ``timeout``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Mapping, Optional, Sequence

from . import errors, lifecycle, registry
from .client import Client
from .dialects import dialect_for
from .options import EnvOptions
from .plugins import get_plugin_manager
from .protocol import MethodInfo
from .signatures import check_arguments, to_signature
from .types import ContainerHandle, EnvType

log = logging.getLogger("rayfine")


class BaseEnvironment:
    """State and container lifecycle shared by the blocking and asyncio wrappers."""

    def __init__(self, options: EnvOptions, launch: lifecycle.Launch) -> None:
        self._options = options
        self._launch = launch
        self._dialect = dialect_for(launch.env_type)
        self._methods: dict[str, MethodInfo] = {}
        self._signatures: dict[str, Any] = {}
        self._closed = False
        self._stop_lock = threading.Lock()

    # -- identity -------------------------------------------------------------------
    @property
    def id(self) -> str:
        """Rayfine's id of this environment (also a container label)."""
        return self._launch.env_id

    @property
    def handle(self) -> ContainerHandle:
        assert self._launch.handle is not None
        return self._launch.handle

    @property
    def name(self) -> str:
        """The container's name."""
        return self._launch.request.name

    @property
    def image(self) -> str:
        return self._options.image

    @property
    def env_type(self) -> EnvType:
        return self._launch.env_type

    @property
    def runtime_name(self) -> str:
        return self._options.runtime

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running"
        return f"<{type(self).__name__} {self.id} image={self.image!r} runtime={self.runtime_name} {state}>"

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._methods))

    # -- calls ----------------------------------------------------------------------
    def _prepare_call(self, method: str, args: Sequence[Any], kwargs: Mapping[str, Any], timeout: Optional[float]) -> tuple[str, bytes]:
        if self._closed:
            raise errors.EnvironmentClosedError(f"Environment {self.id} was cleaned up; load it again to call {method}().")
        if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
            raise errors.ValidationError(f"timeout must be a positive number of seconds, got {timeout!r}.")
        info = self._methods.get(method)
        if self._methods and info is None and self.env_type is EnvType.FUNCTION_BASED:
            raise errors.MethodNotFoundError(
                "AttributeError", f"no method {method!r}; available: {', '.join(sorted(self._methods))}", method=method
            )
        if info is not None:
            check_arguments(info, self._signatures.get(method), args, kwargs)
        return self._dialect.request(info, method, args, kwargs, timeout)

    def _set_methods(self, data: Any) -> None:
        self._methods = self._dialect.parse_methods(data)
        self._signatures = {name: to_signature(info) for name, info in self._methods.items()}

    def _report_call(self, method: str, started: float, error: Optional[BaseException]) -> None:
        hook = get_plugin_manager().hook.rayfine_call
        if hook.get_hookimpls():
            hook(handle=self.handle, method=method, elapsed=time.perf_counter() - started, error=error)

    def _died_error(self, method: str, cause: BaseException, grace: float = 3.0) -> BaseException:
        """After a transport failure: a ContainerDiedError if the container is gone, else ``cause``.

        The connection drops a moment before the engine marks the container
        exited, so the state is polled for up to ``grace`` seconds.
        """
        deadline = time.monotonic() + grace
        while True:
            try:
                state = self._launch.runtime.health(self.handle.id)
            except errors.RayfineError:
                return cause
            if not state.running:
                break
            if time.monotonic() > deadline:
                return cause
            time.sleep(0.05)
        logs = self._launch.runtime.logs(self.handle.id, lifecycle.LOG_TAIL)
        return errors.ContainerDiedError(
            f"The container of environment {self.id} ({self.name}) stopped during {method}()",
            state.exit_code, state.oom_killed, logs,
        )

    # -- lifecycle ------------------------------------------------------------------
    def stop_container(self, reason: str = "cleanup") -> None:
        """Stop and remove the container (idempotent)."""
        with self._stop_lock:
            if self._closed:
                return
            self._closed = True
        registry.discard(self.id)
        self._close_clients()
        try:
            if self._launch.handle is not None:
                self._launch.runtime.stop(self._launch.handle.id)
                get_plugin_manager().hook.rayfine_stop(handle=self._launch.handle, reason=reason)
        finally:
            lifecycle.remove_socket_dir(self._launch)

    def _close_clients(self) -> None:
        """Subclasses close their HTTP clients here."""


class Environment(BaseEnvironment):
    """A running environment, called with blocking methods; safe to share between threads."""

    def __init__(self, options: EnvOptions, launch: lifecycle.Launch) -> None:
        super().__init__(options, launch)
        self._client = Client(launch.handle.endpoint, launch.token) if launch.handle else None

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)

        def remote_method(*args: Any, timeout: Optional[float] = None, **kwargs: Any) -> Any:
            return self.call_method(name, args, kwargs, timeout)

        info = self.__dict__.get("_methods", {}).get(name)
        remote_method.__name__ = name
        remote_method.__doc__ = info.doc if info else None
        return remote_method

    def call_method(self, method: str, args: Sequence[Any] = (), kwargs: Optional[Mapping[str, Any]] = None, timeout: Optional[float] = None) -> Any:
        """Call ``method`` with ``args``/``kwargs``; every name in kwargs is forwarded."""
        kwargs = kwargs or {}
        path, body = self._prepare_call(method, args, kwargs, timeout)
        started = time.perf_counter()
        try:
            response = self._require_client().post(path, body, timeout)
            result = self._dialect.decode(response.status_code, response.content, method)
        except errors.TransportError as exc:
            error = self._died_error(method, exc)
            self._report_call(method, started, error)
            self._maybe_restart(error)
            raise error from (None if error is exc else exc)
        except BaseException as exc:
            self._report_call(method, started, exc)
            raise
        self._report_call(method, started, None)
        return result

    def list_methods(self) -> list[MethodInfo]:
        """The callable methods with their signatures and docstrings."""
        if not self._methods:
            self._load_methods()
        return list(self._methods.values())

    def is_ready(self) -> bool:
        """True if the container runs and its server answers its health check."""
        if self._closed or self._client is None:
            return False
        for path in lifecycle.health_paths(self.env_type):
            try:
                if lifecycle.classify_health(self._client.get(path, timeout=5.0), self.env_type):
                    return True
            except errors.RayfineError:
                return False
        return False

    def cleanup(self) -> None:
        """Stop and remove the container. Safe to call more than once."""
        self.stop_container("cleanup")

    def __enter__(self) -> "Environment":
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # -- internals ------------------------------------------------------------------
    def _require_client(self) -> Client:
        if self._client is None:
            raise errors.EnvironmentClosedError(f"Environment {self.id} has no running container.")
        return self._client

    def _load_methods(self) -> None:
        response = self._require_client().get(self._dialect.methods_path)
        if response.status_code == 200:
            self._set_methods(response.json())

    def wait_ready(self, timeout: float) -> None:
        """Poll until the server answers (or fail fast if the container died)."""
        deadline = time.monotonic() + timeout
        delay, polls = 0.01, 0
        while True:
            for path in lifecycle.health_paths(self.env_type):
                try:
                    if lifecycle.classify_health(self._require_client().get(path, timeout=2.0), self.env_type):
                        return
                except errors.TransportError:
                    break  # not listening yet
                except errors.CallTimeout:
                    break
            polls += 1
            if polls % 5 == 0:
                lifecycle.check_alive(self._launch)
            if time.monotonic() > deadline:
                lifecycle.check_alive(self._launch)
                raise lifecycle.start_timeout_error(self._launch, timeout)
            time.sleep(delay)
            delay = min(delay * 1.5, 0.2)

    def _maybe_restart(self, error: BaseException) -> None:
        if not (self._options.restart and isinstance(error, errors.ContainerDiedError)):
            return
        old = self._launch
        self._launch.runtime.stop(old.handle.id, timeout=0) if old.handle else None
        lifecycle.remove_socket_dir(old)
        fresh = lifecycle.prepare(self._options, env_id=old.env_id)
        lifecycle.start(fresh)
        self._launch = fresh
        self._client.close() if self._client else None
        self._client = Client(fresh.handle.endpoint, fresh.token) if fresh.handle else None
        self.wait_ready(self._options.start_timeout)
        get_plugin_manager().hook.rayfine_stop(handle=old.handle, reason="restart")

    def _close_clients(self) -> None:
        if self._client is not None:
            self._client.close()
