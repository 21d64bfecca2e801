"""Make and end Actor instances: the shared default one, and closing any of them.

``Actor(...)`` runs in a worker thread, because ``__init__`` may be slow
(loading data, models) and must not block the event loop.  ``Actor.close()``,
if the class has one, runs when an instance's life ends: in a worker thread
when it is sync, awaited when it is async; what it raises is logged.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any, Dict, List, Optional

from .errors import ACTOR_INIT_FAILED, REMOTE_EXCEPTION, CallError
from .workers import WorkerPool

logger = logging.getLogger(__name__)

CLOSE_TIMEOUT = 10.0
"""Seconds ``Actor.close()`` may take before it is interrupted (sync) or cancelled (async)."""


async def construct(
    pool: WorkerPool,
    actor_class: type,
    args: List[Any],
    kwargs: Dict[str, Any],
    timeout: Optional[float] = None,
) -> Any:
    """``actor_class(*args, **kwargs)`` in a worker thread.

    :raises CallError: ``actor_init_failed`` with the user's traceback if it raised.
    :raises asyncio.TimeoutError: it ran past ``timeout`` (it was interrupted).
    :raises ThreadWaitTimeout: no thread was free within ``timeout``.
    """
    ok, value = await pool.run(_new, actor_class, args, kwargs, timeout=timeout)
    if ok:
        return value
    raise CallError.from_exception(ACTOR_INIT_FAILED, value)


def _new(actor_class: type, args: List[Any], kwargs: Dict[str, Any]) -> Any:
    return actor_class(*args, **kwargs)


async def close_instance(pool: WorkerPool, instance: Any, what: str) -> None:
    """Call ``instance.close()`` if it has one; log, never raise, what goes wrong.

    :param what: names the instance in log lines, e.g. ``session abc``.
    """
    close = getattr(type(instance), "close", None)
    if close is None or not callable(close):
        return
    try:
        if inspect.iscoroutinefunction(close):
            await asyncio.wait_for(instance.close(), CLOSE_TIMEOUT)
            return
        ok, value = await pool.run(instance.close, timeout=CLOSE_TIMEOUT)
    except asyncio.TimeoutError:
        logger.warning("Actor.close() of %s did not finish within %g s", what, CLOSE_TIMEOUT)
        return
    except CallError as exc:  # no worker thread could run it
        logger.warning("Actor.close() of %s could not run: %s", what, exc.message)
        return
    except Exception as exc:
        ok, value = False, exc
    if not ok and not isinstance(value, asyncio.CancelledError):
        error = CallError.from_exception(REMOTE_EXCEPTION, value)
        logger.warning("Actor.close() of %s raised %s\n%s", what, error.type_name, error.traceback)


def _retrieve(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()


class DefaultActor:
    """The instance plain calls (without a session) use: made once, on first use.

    A call that times out while ``Actor()`` is being made leaves the
    construction running; the next call waits for the same one.  If
    ``Actor()`` raises, nothing is kept and the next call tries again; the
    failure stays in :attr:`error` for ``/health`` (eager mode).

    :param actor_class: the env's ``Actor`` class.
    :param pool: worker threads to construct it in.
    """

    def __init__(self, actor_class: type, pool: WorkerPool) -> None:
        self._actor_class = actor_class
        self._pool = pool
        self._instance: Optional[Any] = None
        self._building: Optional[asyncio.Future[Any]] = None
        self.error: Optional[CallError] = None
        """Why the last construction failed; cleared by a successful one."""

    @property
    def ready(self) -> bool:
        """Whether the instance exists."""
        return self._instance is not None

    @property
    def building(self) -> bool:
        """Whether ``Actor()`` is running right now."""
        return self._building is not None

    async def get(self) -> Any:
        """The instance, constructing it on first use.

        :raises CallError: ``actor_init_failed`` if ``Actor()`` raised.
        """
        instance = self._instance
        if instance is not None:  # the hot path: no thread hop once constructed
            return instance
        return await asyncio.shield(self.start())

    def start(self) -> asyncio.Future:
        """Begin constructing the instance (if nobody has) and return the construction."""
        if self._building is None:
            self._building = asyncio.ensure_future(self._build())
            self._building.add_done_callback(_retrieve)  # failures live on in self.error
        return self._building

    async def _build(self) -> Any:
        try:
            self._instance = await construct(self._pool, self._actor_class, [], {})
            self.error = None
            return self._instance
        except CallError as exc:
            self.error = exc
            raise
        finally:
            self._building = None

    async def close(self) -> None:
        """End the instance's life (``Actor.close()``); the next call makes a new one."""
        instance, self._instance = self._instance, None
        if instance is not None:
            await close_instance(self._pool, instance, "the default instance")
