"""What every pool face shares: identity, status, a progress bar while waiting, opening.

The faces themselves are :mod:`~.warm_faces` (:class:`~.warm_faces.Pool`,
:class:`~.warm_faces.AsyncPool`) and :mod:`~.replica_faces`
(:class:`~.replica_faces.Replicas`, :class:`~.replica_faces.AsyncReplicas`).
Like the environment's own faces they are thin: each operation is one flow
of :mod:`~.warm`, :mod:`~.replicas` or :mod:`~.fleet`, run by
:func:`~.drive.run` in the calling thread or by :func:`~.drive.arun` on the
event loop.  The environments handed out are ordinary
:class:`~rayfine_core.Environment` / :class:`~rayfine_core.AsyncEnvironment`
objects: calls on them go straight to their container.
"""

from __future__ import annotations

import contextlib
from typing import Any, Awaitable, Callable, Generator, Generic, Iterator, Optional, TypeVar

from ..environment import steps
from ..environment.container import runtime_for
from ..environment.life import Life
from ..environment.options import EnvOptions
from .fleet import Fleet
from .members import PoolStatus
from .progress import Bar, ProgressCallback
from .settings import FleetSettings

T = TypeVar("T")


@contextlib.contextmanager
def bar_while(fleet: Fleet, progress: Optional[bool]) -> Iterator[None]:
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


class FleetFace:
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


def open_fleet(
    options: EnvOptions,
    settings: FleetSettings,
    face: Callable[[Life], object],
    on_progress: Optional[ProgressCallback],
) -> Fleet:
    """A fleet of environments of ``options`` (not started: the policy's face opens it)."""
    return Fleet(options, runtime_for(options), settings, face, on_progress)


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
