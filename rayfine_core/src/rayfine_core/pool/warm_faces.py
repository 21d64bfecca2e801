"""Warm pools' faces: :class:`Pool` (blocking) and :class:`AsyncPool` (asyncio)."""

from __future__ import annotations

import contextlib
from typing import AsyncIterator, Iterator, Optional, cast

from ..environment import steps
from ..environment.faces import AsyncEnvironment, Environment
from ..environment.options import EnvOptions
from . import drive
from .faces import FleetFace, bar_while, open_fleet
from .fleet import Fleet
from .progress import ProgressCallback
from .settings import FleetSettings
from .warm import Lender


class _PoolFace(FleetFace):
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
        fleet = open_fleet(options, settings, Environment, on_progress)
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
        with bar_while(self._fleet, progress):
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
        fleet = open_fleet(options, settings, AsyncEnvironment, on_progress)
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
        with bar_while(self._fleet, progress):
            await drive.arun(self._fleet.wait_ready(count, timeout))

    async def close(self) -> None:
        """Stop every environment of the pool (in worker threads; finishes even if cancelled)."""
        await steps.in_thread(self._fleet.close)

    async def __aenter__(self) -> AsyncPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
