"""The two faces of an environment: blocking :class:`Environment` and asyncio :class:`AsyncEnvironment`.

Both are thin: each operation runs the same :class:`~rayfine_core.environment.life.Life`
flow, :class:`Environment` with :func:`~.steps.run` (in the calling thread),
:class:`AsyncEnvironment` with :func:`~.steps.arun` (on the event loop).
``env.evaluate(task_type="sat")`` calls the method ``evaluate`` in the
container; ``timeout=`` is reserved on every method (it is not forwarded):
use ``call_method`` to pass an argument literally named ``timeout``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping, Optional, Sequence

from ..egress.stats import EgressStats
from ..runtime.types import ContainerHandle, EnvType
from ..transport.protocol import MethodInfo
from . import sessions, steps
from .life import Life, State
from .sessions import OpeningSession, Session


class _Face:
    """Identity and the ``env.<method>`` attribute, shared by both faces."""

    def __init__(self, life: Life) -> None:
        self._life = life
        life.face = self

    @property
    def id(self) -> str:
        """Rayfine's id of this environment (also a container label)."""
        return self._life.env_id

    @property
    def name(self) -> str:
        """The container's name."""
        return self._life.name

    @property
    def image(self) -> str:
        return self._life.options.image

    @property
    def env_type(self) -> EnvType:
        return self._life.env_type

    @property
    def runtime_name(self) -> str:
        return self._life.runtime.name

    @property
    def handle(self) -> ContainerHandle:
        """The current container (it changes when ``restart=True`` replaces a dead one)."""
        return self._life.handle

    @property
    def closed(self) -> bool:
        return self._life.state in (State.STOPPING, State.CLOSED)

    def __repr__(self) -> str:
        state = "closed" if self.closed else self._life.state.value
        return (
            f"<{type(self).__name__} {self.id} image={self.image!r}"
            f" runtime={self.runtime_name} {state}>"
        )

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._life.catalogue.names()))

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        call = self.call_method

        def remote_method(*args: Any, timeout: Optional[float] = None, **kwargs: Any) -> Any:
            return call(name, args, kwargs, timeout)

        info = self._life.catalogue.get(name)
        remote_method.__name__ = name
        remote_method.__doc__ = info.doc if info else None
        return remote_method

    def call_method(
        self,
        method: str,
        args: Sequence[Any] = (),
        kwargs: Optional[Mapping[str, Any]] = None,
        timeout: Optional[float] = None,
    ) -> Any:
        raise NotImplementedError

    def egress_stats(self) -> Optional[EgressStats]:
        """Connections the egress proxy allowed and denied so far (None without ``egress=``)."""
        return self._life.egress_stats()

    def detach(self) -> Path:
        """Let the container outlive this process; reach it again with ``rayfine_core.attach()``.

        The environment leaves this process's registry, so exit no longer
        stops it, and its endpoint and token are saved in a state file only
        this user can read.  This object keeps working; ``cleanup()`` still
        stops the container.  Start it with ``labels={rayfine_core.labels.DETACHED: "1"}``
        so that reaping orphans (containers whose owner is gone) leaves it alone.
        """
        return self._life.detach()


class Environment(_Face):
    """A running environment, called with blocking methods; safe to share between threads.

    Nothing here touches asyncio: called from a coroutine, a method simply blocks.
    """

    def call_method(
        self,
        method: str,
        args: Sequence[Any] = (),
        kwargs: Optional[Mapping[str, Any]] = None,
        timeout: Optional[float] = None,
    ) -> Any:
        """Call ``method`` with ``args``/``kwargs``; every name in kwargs is forwarded."""
        return steps.run(self._life.call(method, args, kwargs or {}, timeout))

    def list_methods(self) -> list[MethodInfo]:
        """The callable methods with their signatures and docstrings."""
        return steps.run(self._life.list_methods())

    def is_ready(self) -> bool:
        """True if the container runs and its server answers its health check."""
        return steps.run(self._life.is_ready())

    def logs(self, tail: int = 100) -> str:
        """The container's last ``tail`` lines of output."""
        return self._life.logs(tail)

    def session(
        self,
        *args: Any,
        timeout: Optional[float] = None,
        idle_timeout: Optional[float] = None,
        **kwargs: Any,
    ) -> Session:
        """Open a session: a fresh ``Actor(*args, **kwargs)`` in this container.

        Use it as ``with env.session(seed=1) as s: s.reset()``, or close it.
        ``idle_timeout``: seconds without a call after which the server closes it.
        """
        return sessions.open_blocking(self._life, args, kwargs, timeout, idle_timeout)

    def sessions(self) -> list[dict[str, Any]]:
        """The container's open sessions (id, created, last_used, calls, in_flight, idle_timeout)."""
        return steps.run(self._life.list_sessions())

    def existing_session(self, session_id: str) -> Session:
        """A session opened earlier, by this or another process (``rayfine call --session``)."""
        return sessions.resume(self._life, session_id)

    def cleanup(self) -> None:
        """Stop and remove the container.  Safe to call more than once; retries a failed stop."""
        self._life.stop_blocking("cleanup")

    def __enter__(self) -> Environment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


class AsyncEnvironment(_Face):
    """A running environment whose methods are coroutines: ``await env.evaluate(...)``.

    Many calls may be in flight at once (``asyncio.gather``); they share one
    connection pool per event loop.
    """

    def call_method(
        self,
        method: str,
        args: Sequence[Any] = (),
        kwargs: Optional[Mapping[str, Any]] = None,
        timeout: Optional[float] = None,
    ) -> Awaitable[Any]:
        """Call ``method`` with ``args``/``kwargs``; every name in kwargs is forwarded."""
        return steps.arun(self._life.call(method, args, kwargs or {}, timeout))

    async def list_methods(self) -> list[MethodInfo]:
        """The callable methods with their signatures and docstrings."""
        return await steps.arun(self._life.list_methods())

    async def is_ready(self) -> bool:
        """True if the container runs and its server answers its health check."""
        return await steps.arun(self._life.is_ready())

    async def logs(self, tail: int = 100) -> str:
        """The container's last ``tail`` lines of output."""
        return await steps.in_thread(lambda: self._life.logs(tail))

    def session(
        self,
        *args: Any,
        timeout: Optional[float] = None,
        idle_timeout: Optional[float] = None,
        **kwargs: Any,
    ) -> OpeningSession:
        """Open a session: ``s = await env.session(...)`` or ``async with env.session(...) as s``."""
        return sessions.open_async(self._life, args, kwargs, timeout, idle_timeout)

    async def sessions(self) -> list[dict[str, Any]]:
        """The container's open sessions (id, created, last_used, calls, in_flight, idle_timeout)."""
        return await steps.arun(self._life.list_sessions())

    async def cleanup(self) -> None:
        """Stop and remove the container.  Safe to call more than once; retries a failed stop."""
        await steps.arun(self._life.stop("cleanup"))

    async def __aenter__(self) -> AsyncEnvironment:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.cleanup()
