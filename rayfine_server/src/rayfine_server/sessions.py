"""Sessions: many Actor instances in one server, each opened, used and closed by its id.

An RL run needs many episodes per container; a session is one episode: its
own ``Actor(*args, **kwargs)``, its own state, exceptions and timeouts.  At
most ``max_sessions`` are open at once.  A session ends when it is deleted,
when it has been idle too long, when env.py is reloaded, or when the server
stops; then its in-flight calls are cancelled and ``Actor.close()`` runs.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict
from typing import Any, Awaitable, Dict, List, Optional, Set

from .actor import close_instance, construct
from .errors import SESSION_CAPACITY, SESSION_CLOSED, UNKNOWN_SESSION, CallError
from .request import SESSION_CLOSED as CANCELLED_BY_CLOSE
from .request import Request
from .workers import WorkerPool

_REMEMBERED_CLOSED = 10_000
_closing: Set[asyncio.Future] = set()  # the event loop keeps only weak references to tasks
"""Closed ids kept to answer 410 (not 404) for; older ones are forgotten."""


class Session:
    """One open session.

    :param session_id: its unguessable id.
    :param instance: its own Actor instance.
    :param idle_timeout: seconds without calls after which it is closed.
    """

    __slots__ = (
        "_idle_since",
        "calls",
        "created",
        "id",
        "idle_timeout",
        "instance",
        "last_used",
        "requests",
    )

    def __init__(self, session_id: str, instance: Any, idle_timeout: float) -> None:
        self.id = session_id
        self.instance = instance
        self.idle_timeout = idle_timeout
        self.created = self.last_used = time.time()
        self._idle_since = time.monotonic()
        self.calls = 0
        self.requests: Set[Request] = set()
        """Calls in flight in this session."""

    def enter(self, request: Request) -> None:
        """A call starts in this session."""
        self.calls += 1
        self.requests.add(request)
        self.last_used = time.time()

    def leave(self, request: Request) -> None:
        """A call in this session ended (answered, failed or cancelled)."""
        self.requests.discard(request)
        self.last_used = time.time()
        self._idle_since = time.monotonic()

    def idle_for(self, now: float) -> float:
        """Seconds since the last call ended; 0 while one runs."""
        return 0.0 if self.requests else now - self._idle_since

    def describe(self) -> Dict[str, Any]:
        """The session as ``GET /sessions`` lists it."""
        return {
            "id": self.id,
            "created": self.created,
            "last_used": self.last_used,
            "calls": self.calls,
            "in_flight": len(self.requests),
            "idle_timeout": self.idle_timeout,
        }


class SessionManager:
    """Opens, finds, expires and closes the sessions of one loaded env.py.

    :param actor_class: the env's ``Actor`` class.
    :param pool: worker threads for ``Actor()`` and ``Actor.close()``.
    :param max_sessions: how many may be open at once.
    :param idle_timeout: default seconds before an idle session is closed.
    """

    def __init__(
        self, actor_class: type, pool: WorkerPool, max_sessions: int, idle_timeout: float
    ) -> None:
        self._actor_class = actor_class
        self._pool = pool
        self.max_sessions = max_sessions
        self._idle_timeout = idle_timeout
        self._open: Dict[str, Session] = {}
        self._opening = 0
        self._closed: OrderedDict[str, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._open)

    async def open(
        self,
        args: List[Any],
        kwargs: Dict[str, Any],
        timeout: Optional[float],
        idle_timeout: Optional[float],
    ) -> Session:
        """Construct ``Actor(*args, **kwargs)`` as a new session.

        :raises CallError: ``session_capacity`` when all are in use,
            ``actor_init_failed`` when ``Actor()`` raised.
        :raises asyncio.TimeoutError: ``Actor()`` ran past ``timeout`` (it was interrupted).
        """
        if len(self._open) + self._opening >= self.max_sessions:
            raise CallError(
                SESSION_CAPACITY,
                f"All {self.max_sessions} session(s) are in use; close one"
                " (DELETE /sessions/<id>), wait for one to expire, or allow more with"
                " Actor.max_sessions or RAYFINE_MAX_SESSIONS",
            )
        self._opening += 1
        try:
            instance = await construct(self._pool, self._actor_class, args, kwargs, timeout)
        finally:
            self._opening -= 1
        session = Session(secrets.token_urlsafe(16), instance, idle_timeout or self._idle_timeout)
        self._open[session.id] = session
        return session

    def get(self, session_id: str) -> Session:
        """The open session ``session_id``.

        :raises CallError: ``session_closed`` (410) if it has ended,
            ``unknown_session`` (404) if it never existed here.
        """
        session = self._open.get(session_id)
        if session is not None:
            return session
        reason = self._closed.get(session_id)
        if reason is not None:
            raise CallError(SESSION_CLOSED, f"Session {session_id} {reason}")
        raise CallError(
            UNKNOWN_SESSION,
            f"No session {session_id!r} in this server; open one with POST /sessions",
        )

    def ended(self, reason: str) -> Dict[str, str]:
        """Every id this manager handed out, with why it ended (open ones: ``reason``)."""
        return {**self._closed, **{session_id: reason for session_id in self._open}}

    def remember(self, ended: Dict[str, str]) -> None:
        """Answer ``session_closed`` for ``ended`` ids (of the env.py this one replaces)."""
        self._closed.update(ended)
        while len(self._closed) > _REMEMBERED_CLOSED:
            self._closed.popitem(last=False)

    def describe(self) -> List[Dict[str, Any]]:
        """Every open session, for ``GET /sessions``."""
        return [session.describe() for session in self._open.values()]

    async def close(self, session_id: str, reason: str = "was closed") -> None:
        """End a session: cancel its calls, forget it, run ``Actor.close()``.

        :raises CallError: as :meth:`get`.
        """
        await self._end(self.get(session_id), reason)

    async def close_all(self, reason: str) -> None:
        """End every session (reload, shutdown), closing their Actors concurrently."""
        sessions = list(self._open.values())
        await asyncio.gather(*(self._end(session, reason) for session in sessions))

    def expire(self) -> None:
        """Close, in the background, every session idle longer than its timeout."""
        now = time.monotonic()
        for session in list(self._open.values()):
            if session.idle_for(now) > session.idle_timeout:
                reason = f"expired after {session.idle_timeout:g} s idle"
                task = asyncio.ensure_future(self._end(session, reason))
                _closing.add(task)
                task.add_done_callback(_closing.discard)

    def _end(self, session: Session, reason: str) -> Awaitable[None]:
        """Forget ``session`` and cancel its calls now; return ``Actor.close()`` to await."""
        del self._open[session.id]
        self._closed[session.id] = reason
        while len(self._closed) > _REMEMBERED_CLOSED:
            self._closed.popitem(last=False)
        for request in list(session.requests):
            request.cancel(CANCELLED_BY_CLOSE)
        return close_instance(self._pool, session.instance, f"session {session.id}")
