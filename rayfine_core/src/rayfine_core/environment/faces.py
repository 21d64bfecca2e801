"""The two faces of an environment: blocking :class:`Environment` and asyncio :class:`AsyncEnvironment`.

Both are thin: each operation runs the same :class:`~rayfine_core.environment.life.Life`
flow, :class:`Environment` with :func:`~.steps.run` (in the calling thread),
:class:`AsyncEnvironment` with :func:`~.steps.arun` (on the event loop).
``env.evaluate(task_type="sat")`` calls the method ``evaluate`` in the
container; ``timeout=`` is reserved on every method (it is not forwarded):
use ``call_method`` to pass an argument literally named ``timeout``.

An env method named like an attribute of the face (``name``, ``cleanup``,
...) is hidden by it: loading warns (:class:`HiddenMethodWarning`), and
``env.methods.<name>(...)`` calls any method whatever its name.

A face that nobody holds any more (a notebook cell run again rebinds
``env``) stops its container, unless it was detached or attached: the
registry holds the environment's life, never its face, so the exit hook
still stops what is left.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import warnings
import weakref
from pathlib import Path
from typing import (
    Any,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    Literal,
    Mapping,
    Optional,
    Sequence,
    Union,
    overload,
)

from ..egress.stats import EgressStats
from ..errors import RayfineError, UnknownEnvironmentError
from ..runtime.types import ContainerHandle, EnvType
from ..transport.protocol import MethodInfo
from . import registry, sessions, steps
from .catalogue import method_caller
from .life import Life, State
from .sessions import OpeningSession, Session

log = logging.getLogger("rayfine")


class HiddenMethodWarning(UserWarning):
    """An env method has the name of an Environment attribute; call it as ``env.methods.NAME()``."""


class _Face:
    """Identity and the ``env.<method>`` attribute, shared by both faces."""

    def __init__(self, life: Life) -> None:
        self._life = life
        life.face = self
        finalizer = weakref.finalize(self, _collected, life)
        finalizer.atexit = False  # at exit the registry stops everything, in order

    @property
    def methods(self) -> Methods:
        """Every env method by name, hidden or not: ``env.methods.name(...)``."""
        return Methods(self)

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
        return self._remote(name)

    def _remote(self, name: str) -> Callable[..., Any]:
        """A callable running env method ``name`` (blocking or a coroutine, as the face is)."""
        return method_caller(self.call_method, name, self._life.catalogue.get(name))

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

    @overload
    def logs(self, tail: int = 100, follow: Literal[False] = False) -> str: ...

    @overload
    def logs(self, tail: int = 100, *, follow: Literal[True]) -> Iterator[str]: ...

    def logs(self, tail: int = 100, follow: bool = False) -> Union[str, Iterator[str]]:
        """The container's last ``tail`` lines of output (``print`` and ``logging`` of env.py).

        With ``follow=True``: an iterator of those lines and then of each new one
        (without their newline), until the container stops.
        """
        if follow:
            return _follow(self._life, tail)
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

    @overload
    def logs(self, tail: int = 100, follow: Literal[False] = False) -> Awaitable[str]: ...

    @overload
    def logs(self, tail: int = 100, *, follow: Literal[True]) -> AsyncIterator[str]: ...

    def logs(
        self, tail: int = 100, follow: bool = False
    ) -> Union[Awaitable[str], AsyncIterator[str]]:
        """``await env.logs()``: the container's last ``tail`` lines of output.

        ``async for line in env.logs(follow=True)``: those lines, then each new one
        (without their newline), until the container stops.
        """
        if follow:
            return _afollow(self._life, tail)
        return steps.in_thread(lambda: self._life.logs(tail))

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


class Methods:
    """The env methods of one environment as attributes, whatever their names.

    ``env.methods.name()`` calls the env method ``name`` even though ``env.name`` is
    the container's name; ``dir(env.methods)`` lists them all.
    """

    def __init__(self, face: _Face) -> None:
        self._face = face

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        return self._face._remote(name)

    def __dir__(self) -> list[str]:
        return self._face._life.catalogue.names()

    def __repr__(self) -> str:
        return f"<methods of {self._face!r}: {', '.join(self.__dir__()) or 'none listed'}>"


def hidden_methods(face: _Face) -> list[str]:
    """The env methods an attribute of the face hides (``env.name`` is not the method)."""
    attributes = {name for name in dir(type(face)) if not name.startswith("_")}
    return sorted(attributes & set(face._life.catalogue.names()))


def warn_hidden_methods(face: _Face, stacklevel: int = 2) -> None:
    """One :class:`HiddenMethodWarning` naming every hidden env method, if there is any."""
    hidden = hidden_methods(face)
    if not hidden:
        return
    first = hidden[0]
    warnings.warn(
        f"env methods {', '.join(hidden)} of {face.image} have the names of {type(face).__name__}"
        f" attributes, which win: env.{first} is not the method. Call them as"
        f" env.methods.{first}(...) (or env.call_method({first!r}, args, kwargs)), or rename"
        " them in env.py.",
        HiddenMethodWarning,
        stacklevel=stacklevel + 1,
    )


def _collected(life: Life) -> None:
    """The face of ``life`` was garbage-collected: stop its container if this process owns it.

    Detached and attached environments are not in the registry: they outlive
    their faces.  The stop runs in a worker thread: a collection may happen
    anywhere, even on an event loop.
    """
    try:
        owned = registry.get(life.env_id) is life
    except UnknownEnvironmentError:
        owned = False
    if not owned or life.state in (State.STOPPING, State.CLOSED):
        return
    log.info("rayfine: environment %s is no longer referenced; stopping it", life.env_id)
    steps.engine_pool().submit(_stop_quietly, life)


def _stop_quietly(life: Life) -> None:
    try:
        life.stop_blocking("collected")
    except RayfineError as exc:  # still registered: the exit hook tries again
        log.warning("rayfine: could not stop %s: %s", life.env_id, exc)


def _follow(life: Life, tail: int) -> Iterator[str]:
    for line in life.runtime.follow_logs(life.handle.id, tail):
        yield line.rstrip("\n")


async def _afollow(life: Life, tail: int) -> AsyncIterator[str]:
    """:func:`_follow` on an event loop: a reader thread feeds a queue.

    The thread ends with the container's output, or at the next line after the
    iterator is closed (a blocked read of the engine's stream cannot be interrupted).
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Optional[str], Optional[BaseException]]] = asyncio.Queue(1000)
    closed = threading.Event()
    handle = life.handle

    def put(item: tuple[str, Optional[str], Optional[BaseException]]) -> None:
        if closed.is_set():
            return
        try:
            asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()
        except RuntimeError:  # the event loop is gone: nobody reads any more
            closed.set()

    def read() -> None:
        try:
            for line in life.runtime.follow_logs(handle.id, tail):
                if closed.is_set():
                    return
                put(("line", line.rstrip("\n"), None))
        except BaseException as exc:  # handed to the consumer
            put(("error", None, exc))
        else:
            put(("end", None, None))

    threading.Thread(target=read, name="rayfine-follow-logs", daemon=True).start()
    try:
        while True:
            kind, line, error = await queue.get()
            if kind == "line":
                assert line is not None
                yield line
            elif kind == "error":
                assert error is not None
                raise error
            else:
                return
    finally:
        closed.set()
