"""Replica sets' faces: :class:`Replicas` (blocking) and :class:`AsyncReplicas` (asyncio)."""

from __future__ import annotations

import contextlib
from typing import (
    Any,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    Mapping,
    Optional,
    Sequence,
    cast,
)

from ..environment import steps
from ..environment.catalogue import method_caller
from ..environment.faces import AsyncEnvironment, Environment
from ..environment.life import Life
from ..environment.options import EnvOptions
from ..transport.protocol import MethodInfo
from . import drive
from .balance import balancer
from .drive import PoolFlow
from .faces import FleetFace, bar_while, open_fleet
from .fleet import Fleet
from .members import Member, Phase
from .progress import ProgressCallback
from .replicas import Router
from .settings import FleetSettings


class _ReplicaFace(FleetFace):
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
        ready = self._ready()
        info = ready[0].life.catalogue.get(name) if ready else None
        return method_caller(self.call_method, name, info)

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
    fleet = open_fleet(options, settings, face, on_progress)
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
            with bar_while(replicas._fleet, progress):
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
            with bar_while(fleet, progress):
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
