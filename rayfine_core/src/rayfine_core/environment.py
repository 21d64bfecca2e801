"""The object ``load_env`` returns: a running environment you call methods on.

``env.evaluate(task_type="sat")`` becomes an HTTP call to the container.
``timeout=`` is reserved on every method (it is not forwarded); use
:meth:`Environment.call_method` to pass an argument literally named ``timeout``.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from . import errors, flows, lifecycle, registry, steps
from .client import Client
from .dialects import dialect_for
from .options import EnvOptions
from .plugins import get_plugin_manager
from .protocol import MethodInfo
from .wire import Response
from .signatures import check_arguments, to_signature
from .types import ContainerHandle, EnvType

log = logging.getLogger("rayfine")


class BaseEnvironment:
    """State and container lifecycle shared by the blocking and asyncio wrappers."""

    _state_file: Optional[Path] = None
    """Set once detached: the file that tells :func:`~rayfine_core.attach.attach` how to reach it."""

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
    def _remote_method(self, name: str) -> Callable[..., Any]:
        """``env.name``: a function calling the remote method (awaitable on AsyncEnvironment)."""
        if name.startswith("_"):
            raise AttributeError(name)

        def remote_method(*args: Any, timeout: Optional[float] = None, **kwargs: Any) -> Any:
            return self.call_method(name, args, kwargs, timeout)  # type: ignore[attr-defined]

        info = self.__dict__.get("_methods", {}).get(name)
        remote_method.__name__ = name
        remote_method.__doc__ = info.doc if info else None
        return remote_method

    def _prepare_call(
        self, method: str, args: Sequence[Any], kwargs: Mapping[str, Any], timeout: Optional[float]
    ) -> tuple[str, bytes]:
        if self._closed:
            raise errors.EnvironmentClosedError(
                f"Environment {self.id} was cleaned up; load it again to call {method}()."
            )
        if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
            raise errors.ValidationError(
                f"timeout must be a positive number of seconds, got {timeout!r}."
            )
        info = self._methods.get(method)
        if self._methods and info is None and self.env_type is EnvType.FUNCTION_BASED:
            raise errors.MethodNotFoundError(
                "AttributeError",
                f"no method {method!r}; available: {', '.join(sorted(self._methods))}",
                method=method,
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
            hook(
                handle=self.handle,
                method=method,
                elapsed=time.perf_counter() - started,
                error=error,
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
            if self._state_file is not None:
                self._state_file.unlink(missing_ok=True)

    def detach(self) -> None:
        """Let the container outlive this process; reach it again with :func:`~rayfine_core.attach.attach`.

        The environment leaves this process's registry, so interpreter exit no
        longer stops it, and its endpoint and token are saved in a state file
        only this user can read (see :mod:`rayfine_core.attach`).  This object
        keeps working; ``cleanup()`` still stops the container.  Start it with
        ``labels={rayfine_core.labels.DETACHED: "1"}`` so that reaping orphans
        (containers whose owner process is gone) leaves it alone.
        """
        from .attach import write_state

        if self._closed:
            raise errors.EnvironmentClosedError(
                f"Environment {self.id} was cleaned up; there is nothing to detach."
            )
        self._state_file = write_state(self)
        registry.discard(self.id)

    def _close_clients(self) -> None:
        """Subclasses close their HTTP clients here."""


class Environment(BaseEnvironment):
    """A running environment, called with blocking methods; safe to share between threads.

    Nothing here touches asyncio: called from a coroutine, a method simply blocks.
    """

    def __init__(self, options: EnvOptions, launch: lifecycle.Launch) -> None:
        super().__init__(options, launch)
        self._client: Optional[Client] = None
        self._reconnect()

    def __getattr__(self, name: str) -> Callable[..., Any]:
        return self._remote_method(name)

    def call_method(
        self,
        method: str,
        args: Sequence[Any] = (),
        kwargs: Optional[Mapping[str, Any]] = None,
        timeout: Optional[float] = None,
    ) -> Any:
        """Call ``method`` with ``args``/``kwargs``; every name in kwargs is forwarded."""
        return steps.run(flows.call(self, method, args, kwargs or {}, timeout), self)

    def list_methods(self) -> list[MethodInfo]:
        """The callable methods with their signatures and docstrings."""
        return steps.run(flows.list_methods(self), self)

    def is_ready(self) -> bool:
        """True if the container runs and its server answers its health check."""
        return steps.run(flows.is_ready(self), self)

    def cleanup(self) -> None:
        """Stop and remove the container. Safe to call more than once."""
        self.stop_container("cleanup")

    def __enter__(self) -> "Environment":
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def wait_ready(self, timeout: float) -> None:
        """Poll until the server answers (or fail fast if the container died)."""
        steps.run(flows.wait_ready(self, timeout), self)

    # -- how steps are performed (see rayfine_core.steps) ---------------------------
    def _http(self, step: steps.Http) -> Response:
        client = self._require_client()
        if step.verb == "GET":
            return client.get(step.path, step.timeout or 10.0)
        return client.post(step.path, step.body or b"", step.timeout)

    def _reconnect(self) -> None:
        self._close_clients()
        handle = self._launch.handle
        self._client = Client(handle.endpoint, self._launch.token) if handle else None

    def _require_client(self) -> Client:
        if self._client is None:
            raise errors.EnvironmentClosedError(f"Environment {self.id} has no running container.")
        return self._client

    def _load_methods(self) -> None:
        steps.run(flows.load_methods(self), self)

    def _close_clients(self) -> None:
        if self._client is not None:
            self._client.close()
