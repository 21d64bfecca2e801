"""The faces of pools: :class:`Pool` / :class:`AsyncPool` (warm pools) and :class:`Replicas` /
:class:`AsyncReplicas` (one environment spread over several containers).

Like the environment's own faces they are thin: each operation is one flow
of :mod:`~.warm`, :mod:`~.replicas` or :mod:`~.fleet`, run by
:func:`~.drive.run` in the calling thread or by :func:`~.drive.arun` on the
event loop.  The environments handed out are ordinary
:class:`~rayfine_core.Environment` / :class:`~rayfine_core.AsyncEnvironment`
objects: calls on them go straight to their container.
"""

from __future__ import annotations

import contextlib
from typing import (
    Any,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Generic,
    Iterator,
    Mapping,
    Optional,
    Sequence,
    TypeVar,
    cast,
)

from ..environment import steps
from ..environment.faces import AsyncEnvironment, Environment
from ..environment.life import Life
from ..environment.options import EnvOptions
from ..plugins.manager import get_runtime
from ..transport.protocol import MethodInfo
from . import drive
from .balance import balancer
from .drive import PoolFlow
from .fleet import Fleet
from .members import Member, Phase, PoolStatus
from .progress import Bar, ProgressCallback
from .replicas import Router
from .settings import FleetSettings
from .warm import Lender

T = TypeVar("T")


@contextlib.contextmanager
def _bar_while(fleet: Fleet, progress: Optional[bool]) -> Iterator[None]:
    """Draw the fleet's progress on stderr while the block runs (see :class:`~.progress.Bar`)."""
    bar = Bar.wanted(progress)
    if bar is None:
        yield
        return
    fleet.add_listener(bar.show)
    try:
        yield
    finally:
        fleet.remove_listener(bar.show)
        bar.close(fleet.progress())


class _FleetFace:
    """What both kinds share: identity, status, waiting for readiness."""

    _fleet: Fleet

    @property
    def name(self) -> str:
        """The pool's name (the ``rayfine.pool`` label of its containers)."""
        return self._fleet.name

    @property
    def image(self) -> str:
        return self._fleet.options.image

    @property
    def closed(self) -> bool:
        return self._fleet.closing

    def status(self) -> PoolStatus:
        """Counts of ready, starting, in-use environments, failures and the last error."""
        return self._fleet.status()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._fleet.status()}>"


# -- warm pools -------------------------------------------------------------------------------


class _PoolFace(_FleetFace):
    def __init__(self, fleet: Fleet, lender: Lender) -> None:
        self._fleet = fleet
        self._lender = lender

    @property
    def size(self) -> int:
        """How many idle environments the pool keeps ready."""
        return self._fleet.settings.target

    def release(self, env: object) -> None:
        """Give back an environment from ``acquire()``; never blocks.

        It is stopped in the background and replaced by a fresh one, or, with
        ``reset=``, reset and reused.  Releasing after ``close()`` does nothing.
        """
        self._lender.release(env)


def _open(
    options: EnvOptions,
    settings: FleetSettings,
    face: Callable[[Life], object],
    on_progress: Optional[ProgressCallback],
) -> Fleet:
    return Fleet(options, get_runtime(options.runtime), settings, face, on_progress)


class Pool(_PoolFace):
    """A warm pool of environments of one image, handed out one at a time (blocking API).

    >>> with rf.load_pool("affine:latest", size=8) as pool:
    ...     with pool.env() as env:          # a fresh, ready environment at once
    ...         env.evaluate(task_type="sat")
    """

    @classmethod
    def start(
        cls,
        options: EnvOptions,
        settings: FleetSettings,
        *,
        wait: bool = True,
        timeout: Optional[float] = None,
        on_progress: Optional[ProgressCallback] = None,
        progress: Optional[bool] = None,
    ) -> Pool:
        """Make the pool and start filling it; with ``wait``, return once it is full."""
        fleet = _open(options, settings, Environment, on_progress)
        lender = Lender(fleet)
        fleet.open(lender.missing)
        pool = cls(fleet, lender)
        if wait:
            try:
                pool.wait_ready(timeout=timeout, progress=progress)
            except BaseException:
                with contextlib.suppress(Exception):
                    pool.close()
                raise
        return pool

    def acquire(self, timeout: Optional[float] = None) -> Environment:
        """A ready environment, checked to answer; waits up to ``timeout`` s if none is idle.

        :raises CapacityError: none became free in time.
        :raises StartError: starts keep failing (the message has the last error).
        :raises EnvironmentClosedError: the pool was closed.
        """
        return cast(Environment, drive.run(self._lender.acquire(timeout)).face)

    @contextlib.contextmanager
    def env(self, timeout: Optional[float] = None) -> Iterator[Environment]:
        """``with pool.env() as env:`` acquire, and release however the block ends."""
        env = self.acquire(timeout)
        try:
            yield env
        finally:
            self.release(env)

    def wait_ready(
        self,
        count: Optional[int] = None,
        timeout: Optional[float] = None,
        progress: Optional[bool] = None,
    ) -> None:
        """Block until ``count`` (default: ``size``) environments are idle and ready.

        ``progress``: draw a bar on stderr (None: only if it is a terminal).
        """
        with _bar_while(self._fleet, progress):
            drive.run(self._fleet.wait_ready(count, timeout))

    def close(self) -> None:
        """Stop every environment of the pool, handed out or not.  Idempotent."""
        self._fleet.close()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncPool(_PoolFace):
    """A warm pool for asyncio: ``async with pool.env() as env: await env.evaluate()``."""

    @classmethod
    async def start(
        cls,
        options: EnvOptions,
        settings: FleetSettings,
        *,
        wait: bool = True,
        timeout: Optional[float] = None,
        on_progress: Optional[ProgressCallback] = None,
        progress: Optional[bool] = None,
    ) -> AsyncPool:
        fleet = _open(options, settings, AsyncEnvironment, on_progress)
        lender = Lender(fleet)
        fleet.open(lender.missing)
        pool = cls(fleet, lender)
        if wait:
            try:
                await pool.wait_ready(timeout=timeout, progress=progress)
            except BaseException:
                with contextlib.suppress(Exception):
                    await steps.finish(pool.close())
                raise
        return pool

    async def acquire(self, timeout: Optional[float] = None) -> AsyncEnvironment:
        """Like :meth:`Pool.acquire`, without blocking the event loop."""
        member = await drive.arun(self._lender.acquire(timeout))
        return cast(AsyncEnvironment, member.face)

    @contextlib.asynccontextmanager
    async def env(self, timeout: Optional[float] = None) -> AsyncIterator[AsyncEnvironment]:
        """``async with pool.env() as env:`` acquire, and release however the block ends."""
        env = await self.acquire(timeout)
        try:
            yield env
        finally:
            self.release(env)

    async def wait_ready(
        self,
        count: Optional[int] = None,
        timeout: Optional[float] = None,
        progress: Optional[bool] = None,
    ) -> None:
        with _bar_while(self._fleet, progress):
            await drive.arun(self._fleet.wait_ready(count, timeout))

    async def close(self) -> None:
        """Stop every environment of the pool (in worker threads; finishes even if cancelled)."""
        await steps.in_thread(self._fleet.close)

    async def __aenter__(self) -> AsyncPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


# -- replica sets -------------------------------------------------------------------------------


class _ReplicaFace(_FleetFace):
    def __init__(self, fleet: Fleet, router: Router) -> None:
        self._fleet = fleet
        self._router = router

    @property
    def replicas(self) -> int:
        return self._fleet.settings.target

    def _ready(self) -> list[Member]:
        with self._fleet.lock:
            return self._fleet.members(Phase.READY)

    @property
    def envs(self) -> list[object]:
        """The ready replicas' environments, for direct calls or inspection."""
        return [member.face for member in self._ready()]

    def __len__(self) -> int:
        return len(self._ready())

    def __dir__(self) -> list[str]:
        names = {name for m in self._ready()[:1] for name in m.life.catalogue.names()}
        return sorted(set(super().__dir__()) | names)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        call = self.call_method

        def remote_method(*args: Any, timeout: Optional[float] = None, **kwargs: Any) -> Any:
            return call(name, args, kwargs, timeout)

        ready = self._ready()
        info = ready[0].life.catalogue.get(name) if ready else None
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

    def _list_methods(self) -> PoolFlow[list[MethodInfo]]:
        member = yield from self._router.take(set())
        try:
            return (yield from member.life.list_methods())
        finally:
            self._router.give_back(member)

    def _any_ready(self) -> PoolFlow[bool]:
        for member in self._ready():
            if (yield from member.life.is_ready()):
                return True
        return False

    def _settle(self, member: Member) -> object:
        self._router.give_back(member)
        return member.face


def _replica_fleet(
    options: EnvOptions,
    settings: FleetSettings,
    load_balance: str,
    face: Callable[[Life], object],
    on_progress: Optional[ProgressCallback],
) -> tuple[Fleet, Router]:
    chooser = balancer(load_balance)  # a bad name fails before any container starts
    fleet = _open(options, settings, face, on_progress)
    router = Router(fleet, chooser)
    fleet.open(router.missing)
    return fleet, router


class Replicas(_ReplicaFace):
    """One environment served by several containers; each call goes to one of them (blocking API).

    >>> with rf.load_replicas("affine:latest", 4) as env:
    ...     env.evaluate(task_type="sat")      # to the least busy replica
    """

    @classmethod
    def start(
        cls,
        options: EnvOptions,
        settings: FleetSettings,
        load_balance: str,
        *,
        timeout: Optional[float] = None,
        on_progress: Optional[ProgressCallback] = None,
        progress: Optional[bool] = None,
    ) -> Replicas:
        """Start every replica concurrently and return once all answer."""
        replicas = cls(*_replica_fleet(options, settings, load_balance, Environment, on_progress))
        try:
            with _bar_while(replicas._fleet, progress):
                drive.run(replicas._fleet.wait_ready(None, timeout))
        except BaseException:
            with contextlib.suppress(Exception):
                replicas.cleanup()
            raise
        return replicas

    def call_method(
        self,
        method: str,
        args: Sequence[Any] = (),
        kwargs: Optional[Mapping[str, Any]] = None,
        timeout: Optional[float] = None,
    ) -> Any:
        """Call ``method`` on one replica (see :mod:`~rayfine_core.pool.replicas` for retries)."""
        return drive.run(self._router.call(method, args, kwargs or {}, timeout))

    def list_methods(self) -> list[MethodInfo]:
        return drive.run(self._list_methods())

    def is_ready(self) -> bool:
        """True if at least one replica answers its health check."""
        return drive.run(self._any_ready())

    def pick(self) -> Environment:
        """The replica the balancer would choose now (waiting for one if none is ready)."""
        return cast(Environment, self._settle(drive.run(self._router.take(set()))))

    @contextlib.contextmanager
    def hold(self) -> Iterator[Environment]:
        """A replica counted as busy while the block runs (place long-lived work, e.g. sessions)."""
        member = drive.run(self._router.take(set()))
        try:
            yield cast(Environment, member.face)
        finally:
            self._router.give_back(member)

    def wait_ready(self, count: Optional[int] = None, timeout: Optional[float] = None) -> None:
        """Block until ``count`` (default: all) replicas are ready."""
        drive.run(self._fleet.wait_ready(count, timeout))

    def cleanup(self) -> None:
        """Stop every replica.  Idempotent."""
        self._fleet.close()

    def __enter__(self) -> Replicas:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


class AsyncReplicas(_ReplicaFace):
    """:class:`Replicas` for asyncio: ``await env.evaluate(...)``."""

    @classmethod
    async def start(
        cls,
        options: EnvOptions,
        settings: FleetSettings,
        load_balance: str,
        *,
        timeout: Optional[float] = None,
        on_progress: Optional[ProgressCallback] = None,
        progress: Optional[bool] = None,
    ) -> AsyncReplicas:
        fleet, router = _replica_fleet(
            options, settings, load_balance, AsyncEnvironment, on_progress
        )
        replicas = cls(fleet, router)
        try:
            with _bar_while(fleet, progress):
                await drive.arun(fleet.wait_ready(None, timeout))
        except BaseException:
            with contextlib.suppress(Exception):
                await steps.finish(replicas.cleanup())
            raise
        return replicas

    def call_method(
        self,
        method: str,
        args: Sequence[Any] = (),
        kwargs: Optional[Mapping[str, Any]] = None,
        timeout: Optional[float] = None,
    ) -> Awaitable[Any]:
        return drive.arun(self._router.call(method, args, kwargs or {}, timeout))

    async def list_methods(self) -> list[MethodInfo]:
        return await drive.arun(self._list_methods())

    async def is_ready(self) -> bool:
        return await drive.arun(self._any_ready())

    async def pick(self) -> AsyncEnvironment:
        member = await drive.arun(self._router.take(set()))
        return cast(AsyncEnvironment, self._settle(member))

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[AsyncEnvironment]:
        member = await drive.arun(self._router.take(set()))
        try:
            yield cast(AsyncEnvironment, member.face)
        finally:
            self._router.give_back(member)

    async def wait_ready(
        self, count: Optional[int] = None, timeout: Optional[float] = None
    ) -> None:
        await drive.arun(self._fleet.wait_ready(count, timeout))

    async def cleanup(self) -> None:
        await steps.in_thread(self._fleet.close)

    async def __aenter__(self) -> AsyncReplicas:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.cleanup()


# -- awaiting an opening -----------------------------------------------------------------------


class Opening(Generic[T]):
    """What ``aload_pool``/``aload_replicas`` return: ``await`` it, or ``async with`` it
    (closing what it opened when the block ends)."""

    def __init__(self, opening: Awaitable[T], close: Callable[[T], Awaitable[None]]) -> None:
        self._opening = opening
        self._close = close
        self._opened: Optional[T] = None

    def __await__(self) -> Generator[Any, None, T]:
        return self._opening.__await__()

    async def __aenter__(self) -> T:
        self._opened = await self._opening
        return self._opened

    async def __aexit__(self, *exc: object) -> None:
        if self._opened is not None:
            await steps.finish(self._close(self._opened))
