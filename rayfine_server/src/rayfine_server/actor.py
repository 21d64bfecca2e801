"""The one lazily created Actor instance of an environment."""

from __future__ import annotations

import threading
from typing import Any, Optional

import anyio.to_thread
from anyio import CapacityLimiter

from .errors import ACTOR_INIT_FAILED, CallError


class ActorHolder:
    """Creates ``Actor()`` on first use, exactly once, and hands it out.

    Construction runs in a worker thread because ``Actor.__init__`` may be
    slow (loading data, models) and must not block the event loop.  A
    threading lock, not an async one, guards it: threads abandoned by a timed
    out call may still be constructing when the next call arrives.  If
    ``__init__`` raises, nothing is kept, so a later call tries again.
    """

    def __init__(self, actor_class: type) -> None:
        self._actor_class = actor_class
        self._instance: Optional[Any] = None
        self._lock = threading.Lock()

    @property
    def ready(self) -> bool:
        """Whether the instance has been constructed."""
        return self._instance is not None

    async def get(self, limiter: CapacityLimiter) -> Any:
        """The instance, constructing it in a worker thread on first use.

        :raises CallError: ``actor_init_failed`` if ``Actor.__init__`` raised.
        """
        instance = self._instance
        if instance is not None:  # the hot path: no thread hop once constructed
            return instance
        return await anyio.to_thread.run_sync(
            self._get_or_create, limiter=limiter, abandon_on_cancel=True
        )

    def _get_or_create(self) -> Any:
        """Return the instance, constructing it if no thread has yet (thread side)."""
        with self._lock:
            if self._instance is None:
                self._instance = self._construct()
            return self._instance

    def _construct(self) -> Any:
        """Call ``Actor()``, reporting its failure with the user's traceback."""
        try:
            return self._actor_class()
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - reported to the caller
            raise CallError.from_exception(ACTOR_INIT_FAILED, exc) from None
