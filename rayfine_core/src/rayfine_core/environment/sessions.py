"""Sessions: many independent episodes in one container, each its own ``Actor`` instance.

``env.session(seed=1)`` constructs ``Actor(seed=1)`` in the environment's
container and returns an object with the same call surface as the
environment (``s.reset()``, ``s.step(action)``, ``s.list_methods()``),
usable as ``with``/``async with`` and closed explicitly, at the end of the
block, or by the server after ``idle_timeout`` seconds without a call.
Module-level functions are stateless and callable from any session.  A
session lives in one container: if ``restart=True`` replaces it, the
session is gone (:class:`~rayfine_core.errors.SessionClosedError`).
"""

from __future__ import annotations

from typing import Any, Callable, Generator, Mapping, Optional, Sequence

from ..transport.protocol import MethodInfo
from . import steps
from .catalogue import method_caller
from .container import Container
from .life import Life


class _SessionFace:
    """Identity and ``session.<method>`` for both session faces."""

    def __init__(self, life: Life, session_id: str, container: Container) -> None:
        self._life = life
        self._container = container
        self.id = session_id
        """The server's id of this session (unguessable)."""
        self.closed = False

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<{type(self).__name__} {self.id[:8]}... of {self._life.env_id} {state}>"

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._life.catalogue.names()))

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        return method_caller(self.call_method, name, self._life.catalogue.get(name))

    def call_method(
        self,
        method: str,
        args: Sequence[Any] = (),
        kwargs: Optional[Mapping[str, Any]] = None,
        timeout: Optional[float] = None,
    ) -> Any:
        raise NotImplementedError

    def _call(
        self, method: str, args: Sequence[Any], kwargs: Optional[Mapping[str, Any]], timeout: Any
    ) -> steps.Flow[Any]:
        return self._life.session_call(
            self.id, self._container, method, args, kwargs or {}, timeout
        )


class Session(_SessionFace):
    """A session of a blocking :class:`~rayfine_core.Environment`."""

    def call_method(
        self,
        method: str,
        args: Sequence[Any] = (),
        kwargs: Optional[Mapping[str, Any]] = None,
        timeout: Optional[float] = None,
    ) -> Any:
        """Call ``method`` on this session's Actor; every name in kwargs is forwarded."""
        return steps.run(self._call(method, args, kwargs, timeout))

    def list_methods(self) -> list[MethodInfo]:
        return steps.run(self._life.list_methods())

    def close(self) -> None:
        """End the session (its ``Actor.close()`` runs).  Safe to call more than once."""
        if not self.closed:
            self.closed = True
            steps.run(self._life.close_session(self.id, self._container))

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncSession(_SessionFace):
    """A session of an :class:`~rayfine_core.AsyncEnvironment`: its methods are coroutines."""

    def call_method(
        self,
        method: str,
        args: Sequence[Any] = (),
        kwargs: Optional[Mapping[str, Any]] = None,
        timeout: Optional[float] = None,
    ) -> Any:
        """Call ``method`` on this session's Actor; every name in kwargs is forwarded."""
        return steps.arun(self._call(method, args, kwargs, timeout))

    async def list_methods(self) -> list[MethodInfo]:
        return await steps.arun(self._life.list_methods())

    async def close(self) -> None:
        """End the session (its ``Actor.close()`` runs).  Safe to call more than once."""
        if not self.closed:
            self.closed = True
            await steps.arun(self._life.close_session(self.id, self._container))

    async def __aenter__(self) -> AsyncSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class OpeningSession:
    """What ``AsyncEnvironment.session()`` returns: ``await`` it, or ``async with`` it."""

    def __init__(self, life: Life, flow: steps.Flow[tuple[str, Container]]) -> None:
        self._life = life
        self._flow = flow
        self._session: Optional[AsyncSession] = None

    async def _open(self) -> AsyncSession:
        session_id, container = await steps.arun(self._flow)
        return AsyncSession(self._life, session_id, container)

    def __await__(self) -> Generator[Any, None, AsyncSession]:
        return self._open().__await__()

    async def __aenter__(self) -> AsyncSession:
        self._session = await self._open()
        return self._session

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()


def resume(life: Life, session_id: str) -> Session:
    """A :class:`Session` for an id the server gave out before (it answers if it is unknown)."""
    container = life.current_container()
    return Session(life, session_id, container)


def open_blocking(
    life: Life,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    timeout: Optional[float],
    idle_timeout: Optional[float],
) -> Session:
    session_id, container = steps.run(life.open_session(args, kwargs, timeout, idle_timeout))
    return Session(life, session_id, container)


def open_async(
    life: Life,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    timeout: Optional[float],
    idle_timeout: Optional[float],
) -> OpeningSession:
    return OpeningSession(life, life.open_session(args, kwargs, timeout, idle_timeout))
