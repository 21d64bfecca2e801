"""The asyncio public functions: start environments and call them without blocking the event loop.

    async with rf.aload_env("affine:latest") as env:
        results = await asyncio.gather(*(env.evaluate(seed=i) for i in range(64)))

    envs = await rf.aload_envs("affine:latest", 20)   # started concurrently, all or nothing
    # or: envs, errors = await rf.aload_envs("affine:latest", 20, keep_started=True)
    try:
        ...
    finally:
        await asyncio.gather(*(env.cleanup() for env in envs))

At most ``RAYFINE_MAX_CONCURRENT_STARTS`` (default 8) starts run at once per
event loop, however many ``aload_env`` calls are gathered; the rest wait
their turn.  A start holds its slot until the server answers, so the bound
limits both the engine's load and the CPU spent booting servers.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import threading
import time
from collections.abc import Coroutine
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Generator,
    Literal,
    NamedTuple,
    Optional,
    Sequence,
    TypeVar,
    Union,
    overload,
)

from . import errors
from .api import bind_options, load_env, runtime_for
from .environment import registry
from .environment.faces import AsyncEnvironment, warn_hidden_methods
from .environment.life import Life
from .environment.options import EnvOptions
from .environment.steps import arun, finish
from .pool.balance import balancer
from .pool.faces import Opening
from .pool.progress import Bar, ProgressCallback, Tally
from .pool.replica_faces import AsyncReplicas
from .pool.settings import REPLICAS, WARM, FleetSettings, default_name
from .pool.warm_faces import AsyncPool

if TYPE_CHECKING:
    from typing_extensions import ParamSpec

    P = ParamSpec("P")

R = TypeVar("R")
log = logging.getLogger("rayfine")

MAX_STARTS_VARIABLE = "RAYFINE_MAX_CONCURRENT_STARTS"
DEFAULT_MAX_STARTS = 8
_slots: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}
_slots_lock = threading.Lock()


def _parameters_of(source: Callable[P, Any]) -> Callable[[Callable[..., R]], Callable[P, R]]:
    """Give the decorated function ``source``'s parameters, for help(), IDEs and type checkers."""

    def apply(fn: Callable[..., R]) -> Callable[P, R]:
        returns = inspect.signature(fn).return_annotation
        fn.__signature__ = inspect.signature(source).replace(return_annotation=returns)  # type: ignore[attr-defined]
        return fn  # type: ignore[return-value]

    return apply


class Loading(Coroutine[Any, Any, AsyncEnvironment]):
    """What :func:`aload_env` returns: a coroutine (``await`` it, ``asyncio.run`` it,
    make it a task) that also works as ``async with``, cleaning up on exit."""

    def __init__(self, starting: Coroutine[Any, Any, AsyncEnvironment]) -> None:
        self._starting = starting
        self._env: AsyncEnvironment | None = None

    def send(self, value: Any) -> Any:
        return self._starting.send(value)

    def throw(self, *exc: Any) -> Any:
        return self._starting.throw(*exc)

    def close(self) -> None:
        self._starting.close()

    def __await__(self) -> Generator[Any, None, AsyncEnvironment]:
        return self._starting.__await__()

    async def __aenter__(self) -> AsyncEnvironment:
        self._env = await self._starting
        return self._env

    async def __aexit__(self, *exc: object) -> None:
        if self._env is not None:
            await self._env.cleanup()


@_parameters_of(load_env)
def aload_env(*args: Any, **kwargs: Any) -> Loading:
    """Like :func:`~rayfine_core.load_env` (same parameters), without blocking the event loop.

    ``env = await aload_env(image)`` or ``async with aload_env(image) as env``.
    Arguments are checked at once; the start waits for one of the
    ``RAYFINE_MAX_CONCURRENT_STARTS`` slots.
    """
    return Loading(_start(bind_options(*args, **kwargs)))


async def _start(options: EnvOptions) -> AsyncEnvironment:
    async with _start_slots():
        life = Life(options, runtime_for(options))
        env = AsyncEnvironment(life)
        await arun(life.start())
    warn_hidden_methods(env, stacklevel=1)
    return env


class Started(NamedTuple):
    """What ``aload_envs(..., keep_started=True)`` returns: ``envs, errors = await ...``."""

    envs: list[AsyncEnvironment]
    """The environments that started (yours to clean up)."""
    errors: list[BaseException]
    """Why the others did not, one exception per failed start."""


@overload
async def aload_envs(
    image: str,
    n: int,
    *,
    keep_started: Literal[False] = False,
    on_progress: Optional[ProgressCallback] = None,
    progress: Optional[bool] = None,
    **kwargs: Any,
) -> list[AsyncEnvironment]: ...


@overload
async def aload_envs(
    image: str,
    n: int,
    *,
    keep_started: Literal[True],
    on_progress: Optional[ProgressCallback] = None,
    progress: Optional[bool] = None,
    **kwargs: Any,
) -> Started: ...


async def aload_envs(
    image: str,
    n: int,
    *,
    keep_started: bool = False,
    on_progress: Optional[ProgressCallback] = None,
    progress: Optional[bool] = None,
    **kwargs: Any,
) -> Union[list[AsyncEnvironment], Started]:
    """Start ``n`` environments of ``image`` concurrently (``kwargs`` as for ``load_env``).

    By default all or nothing: if one start fails, the others are stopped (or
    never started) and the first error is raised.  With ``keep_started=True``
    the ones that started are kept and returned with the errors of the others:
    ``envs, errors = await aload_envs(image, 20, keep_started=True)``.
    Progress is logged on the ``rayfine`` logger (INFO: the batch, DEBUG: each start);
    ``on_progress`` is called with a :class:`~rayfine_core.pool.Progress` as starts
    finish; ``progress`` draws a bar on stderr (None: only if it is a terminal).
    Cancelling the call stops every environment it started, in both modes.
    """
    if not isinstance(n, int) or n < 0:
        raise errors.ValidationError(f"n must be a non-negative int, got {n!r}.")
    if kwargs.get("container_name") and n > 1:
        raise errors.ValidationError(
            "container_name names one container; leave it unset to start several."
        )
    loading = [aload_env(image, **kwargs) for _ in range(n)]
    tally = Tally(image, n, on_progress, Bar.wanted(progress))
    tasks = [asyncio.ensure_future(tally.follow(each)) for each in loading]
    logged = _StartProgress(image, n)
    for task in tasks:
        task.add_done_callback(logged.done)
    try:
        if not keep_started:
            return list(await asyncio.gather(*tasks))
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    except BaseException:
        await _finish_abandon(tasks)
        raise
    finally:
        logged.finish()
        tally.close()
    envs = [each for each in outcomes if isinstance(each, AsyncEnvironment)]
    return Started(envs, [each for each in outcomes if isinstance(each, BaseException)])


class _StartProgress:
    """Logs a batch of starts: how many, how far, how long."""

    def __init__(self, image: str, n: int) -> None:
        self.image, self.n = image, n
        self.started = self.failed = 0
        self.since = time.monotonic()
        if n:
            log.info(
                "rayfine: starting %d environments of %s (%d at a time)",
                n,
                image,
                max_concurrent_starts(),
            )

    def done(self, task: asyncio.Future[AsyncEnvironment]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            self.started += 1
            log.debug(
                "rayfine: %s started (%d/%d, %.1fs)",
                task.result().id,
                self.started,
                self.n,
                time.monotonic() - self.since,
            )
        else:
            self.failed += 1
            log.debug("rayfine: a start of %s failed: %s", self.image, error)

    def finish(self) -> None:
        if self.n:
            log.info(
                "rayfine: %d of %d environments of %s started (%d failed) in %.1fs",
                self.started,
                self.n,
                self.image,
                self.failed,
                time.monotonic() - self.since,
            )


def aload_pool(
    image: str,
    size: int,
    *,
    name: Optional[str] = None,
    reset: Optional[str] = None,
    max_uses: Optional[int] = None,
    max_envs: Optional[int] = None,
    max_starting: Optional[int] = None,
    health_interval: float = 10.0,
    wait: bool = True,
    timeout: Optional[float] = None,
    on_progress: Optional[ProgressCallback] = None,
    progress: Optional[bool] = None,
    **env_options: Any,
) -> Opening[AsyncPool]:
    """:func:`~rayfine_core.load_pool` for asyncio: ``pool = await aload_pool(...)`` or
    ``async with aload_pool(...) as pool``; acquire with ``async with pool.env() as env``.
    Arguments are checked at once."""
    settings = FleetSettings(
        WARM,
        name or default_name(image),
        size,
        max_starting=max_starting,
        max_envs=max_envs,
        health_interval=health_interval,
        reset=reset,
        max_uses=max_uses,
    )
    opening = AsyncPool.start(
        bind_options(image, **env_options),
        settings,
        wait=wait,
        timeout=timeout,
        on_progress=on_progress,
        progress=progress,
    )
    return Opening(opening, AsyncPool.close)


def aload_replicas(
    image: str,
    replicas: int,
    *,
    load_balance: str = "least_busy",
    name: Optional[str] = None,
    max_starting: Optional[int] = None,
    health_interval: float = 5.0,
    timeout: Optional[float] = None,
    on_progress: Optional[ProgressCallback] = None,
    progress: Optional[bool] = None,
    **env_options: Any,
) -> Opening[AsyncReplicas]:
    """:func:`~rayfine_core.load_replicas` for asyncio: ``env = await aload_replicas(...)`` or
    ``async with aload_replicas(...) as env``; then ``await env.method(...)``."""
    settings = FleetSettings(
        REPLICAS,
        name or default_name(image),
        replicas,
        max_starting=max_starting,
        health_interval=health_interval,
    )
    balancer(load_balance)  # a bad name fails here, not when awaited
    opening = AsyncReplicas.start(
        bind_options(image, **env_options),
        settings,
        load_balance,
        timeout=timeout,
        on_progress=on_progress,
        progress=progress,
    )
    return Opening(opening, AsyncReplicas.cleanup)


async def _finish_abandon(tasks: Sequence[asyncio.Future[AsyncEnvironment]]) -> None:
    await finish(_abandon(tasks))


async def _abandon(tasks: Sequence[asyncio.Future[AsyncEnvironment]]) -> None:
    """Cancel the starts still running and stop the environments already started."""
    for task in tasks:
        task.cancel()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    started = [env for env in outcomes if isinstance(env, AsyncEnvironment)]
    await asyncio.gather(*(env.cleanup() for env in started), return_exceptions=True)


async def aget_environment(env_id: str) -> AsyncEnvironment:
    """The active async environment with this id (raises UnknownEnvironmentError)."""
    face = registry.get(env_id).face
    if not isinstance(face, AsyncEnvironment):
        raise errors.UnknownEnvironmentError(
            f"{env_id!r} is a blocking environment; use get_environment()."
        )
    return face


async def acleanup_all_environments() -> int:
    """Stop every environment this process started, concurrently; return how many."""

    async def stop(life: Life) -> bool:
        try:
            await arun(life.stop("cleanup"))
        except Exception as exc:  # keep going: one failure must not leak the rest
            log.warning("rayfine: could not clean up %s: %s", life.env_id, exc)
            return False
        return True

    return sum(await finish(asyncio.gather(*(stop(life) for life in registry.active()))))


def max_concurrent_starts() -> int:
    """``RAYFINE_MAX_CONCURRENT_STARTS``: how many starts may run at once per event loop."""
    raw = os.environ.get(MAX_STARTS_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_MAX_STARTS
    if not raw.isdigit() or int(raw) < 1:
        raise errors.ValidationError(
            f"{MAX_STARTS_VARIABLE} must be a whole number >= 1, got {raw!r}."
        )
    return int(raw)


def _start_slots() -> asyncio.Semaphore:
    """The running loop's start semaphore (an asyncio primitive belongs to one loop)."""
    loop = asyncio.get_running_loop()
    with _slots_lock:
        for old in [old for old in _slots if old.is_closed()]:
            del _slots[old]
        if loop not in _slots:
            _slots[loop] = asyncio.Semaphore(max_concurrent_starts())
        return _slots[loop]
