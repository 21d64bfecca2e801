"""The routes of a function-based environment: health, methods, calls and sessions.

``FunctionApp.handle`` turns one authenticated request into one response;
everything about HTTP itself lives in :mod:`connection`.  The loaded env.py
and what serves it (default Actor instance, sessions, dispatcher) form one
:class:`ServedEnv`, which a reload replaces as a whole.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

from .actor import DefaultActor
from .arguments import check_arguments
from .call_request import parse_call_request, parse_session_request
from .config import ServerConfig
from .dispatch import Dispatcher
from .errors import (
    APP_STARTING,
    BAD_REQUEST,
    OVERLOADED,
    TIMEOUT,
    CallError,
)
from .loader import LoadedEnv
from .methods import describe_method
from .reload import Watcher
from .request import Request
from .responses import Response
from .sessions import SessionManager
from .workers import ThreadWaitTimeout, WorkerPool

ENV_TYPE = "function_based"
ITEMS_PER_BYTE = 16
"""A request body may hold one JSON value per this many bytes of RAYFINE_MAX_BODY_BYTES."""
ROUTES = (
    "GET /health, GET /methods, POST /call, POST /sessions, GET /sessions,"
    " GET /sessions/<id>, DELETE /sessions/<id>"
)

logger = logging.getLogger(__name__)


class ServedEnv:
    """One imported env.py and everything that serves it.

    :param env: the outcome of importing env.py (possibly a failure).
    :param pool: the server's worker threads.
    :param config: the server's settings.
    """

    def __init__(self, env: LoadedEnv, pool: WorkerPool, config: ServerConfig) -> None:
        self.env = env
        self.max_body = config.max_body
        self.default: Optional[DefaultActor] = None
        self.sessions: Optional[SessionManager] = None
        self.max_sessions = 0
        if env.actor_class is not None:
            self.max_sessions = config.max_sessions or env.max_sessions
            self.default = DefaultActor(env.actor_class, pool)
            self.sessions = SessionManager(
                env.actor_class, pool, self.max_sessions, config.session_idle_timeout
            )
        self.dispatcher = Dispatcher(env, pool, self.default, self.sessions)
        self.methods_body = b""
        if env.error is None:
            methods = [describe_method(m) for m in env.methods.values()]
            payload: Dict[str, Any] = {"methods": methods, "max_sessions": self.max_sessions}
            if env.constructor is not None:
                payload["actor"] = describe_method(env.constructor)
            self.methods_body = json.dumps(payload).encode()

    def succeed(self, old: ServedEnv, reason: str) -> None:
        """Take over from ``old`` (a reload): its sessions will answer ``session_closed``."""
        if old.sessions is not None and self.sessions is not None:
            self.sessions.remember(old.sessions.ended(reason))

    async def close(self, reason: str) -> None:
        """End every session and the default instance (reload, shutdown)."""
        if self.sessions is not None:
            await self.sessions.close_all(reason)
        if self.default is not None:
            await self.default.close()


class FunctionApp:
    """Answers the routes for the env.py currently served.

    :param served: the loaded env.py.
    :param pool: the server's worker threads.
    :param eager: ``RAYFINE_EAGER=1``: the default instance is built at start-up,
        and ``/health`` reports its construction.
    :param reload_from: ``RAYFINE_RELOAD=1``: watch this directory, and on a change
        re-import env.py with ``rebuild``.
    :param rebuild: imports env.py afresh and builds what serves it.
    """

    def __init__(
        self,
        served: ServedEnv,
        pool: WorkerPool,
        eager: bool = False,
        reload_from: Optional[Path] = None,
        rebuild: Optional[Callable[[], ServedEnv]] = None,
    ) -> None:
        self.served = served
        self._pool = pool
        self._eager = eager
        self._reload_from = reload_from
        self._rebuild = rebuild
        self._watcher: Optional[Watcher] = None
        self._reloading: Optional[asyncio.Future] = None
        self._changed_again = False
        self._max_items = served.max_body // ITEMS_PER_BYTE

    def start(self, stop: asyncio.Future[int]) -> None:
        """Called on the event loop before the first request: eager construction, reload."""
        self._build_eagerly()
        if self._reload_from is not None and self._rebuild is not None:
            self._watcher = Watcher(self._reload_from, self._on_change)
            self._watcher.start()

    def _build_eagerly(self) -> None:
        if self._eager and self.served.default is not None:
            self.served.default.start()

    def _on_change(self) -> None:
        if self._reloading is not None:
            self._changed_again = True  # reload once more when this one is done
        else:
            self._reloading = asyncio.ensure_future(self._reload())

    async def _reload(self) -> None:
        """Re-import env.py; the old sessions and default instance are closed."""
        assert self._rebuild is not None
        reason = "was closed: env.py was reloaded"
        try:
            while True:
                self._changed_again = False
                old, new = self.served, self._rebuild()
                new.succeed(old, reason)
                self.served = new
                self._build_eagerly()
                if new.env.error is None:
                    logger.warning(
                        "Reloaded %s: %d methods", new.env.env_file, len(new.env.methods)
                    )
                await old.close(reason)
                if not self._changed_again:
                    return
        finally:
            self._reloading = None

    def tick(self) -> None:
        """Called about once a second: expire idle sessions."""
        if self.served.sessions is not None:
            self.served.sessions.expire()

    async def shutdown(self) -> None:
        """End every session and the default instance, calling ``Actor.close()``."""
        if self._watcher is not None:
            self._watcher.stop()
        await self.served.close("was closed: the server is shutting down")

    async def handle(self, request: Request) -> Response:
        """Answer one authenticated request; every failure in the common error shape."""
        try:
            return await self._route(request)
        except CallError as exc:
            return exc.to_response()

    async def _route(self, request: Request) -> Response:
        path = request.head.path
        verb = "GET" if request.head.method == "HEAD" else request.head.method
        served = self.served
        if path == "/call":
            _allow(path, verb, "POST")
            _loaded(served)
            call = parse_call_request(await request.body.read(), self._max_items)
            return Response(200, await served.dispatcher.call(request, call))
        if path == "/health":
            _allow(path, verb, "GET")
            return self._health(served)
        if path == "/methods":
            _allow(path, verb, "GET")
            _loaded(served)
            return Response(200, served.methods_body)
        if path == "/sessions":
            _allow(path, verb, "GET", "POST")
            _loaded(served)
            if verb == "POST":
                return await self._open_session(served, await request.body.read())
            return _json(
                200, {"sessions": _sessions(served).describe(), "max_sessions": served.max_sessions}
            )
        if path.startswith("/sessions/"):
            _allow(path, verb, "GET", "DELETE")
            _loaded(served)
            session_id = path[len("/sessions/") :]
            if verb == "DELETE":
                await _sessions(served).close(session_id)
                return _json(200, {"closed": session_id})
            return _json(200, _sessions(served).get(session_id).describe())
        raise CallError(BAD_REQUEST, f"No route {verb} {path}; routes: {ROUTES}", status=404)

    def _health(self, served: ServedEnv) -> Response:
        if served.env.error is not None:
            raise served.env.error
        if self._pool.overloaded:
            raise CallError(
                OVERLOADED,
                f"All {self._pool.max_threads} worker threads are stuck in calls that timed out"
                " (code blocked in C does not notice interrupts); restart the container",
            )
        default = served.default
        if self._eager and default is not None and not default.ready:
            failed = default.error
            if failed is not None:  # 503: this container cannot serve its Actor
                raise CallError(
                    failed.kind,
                    failed.message,
                    type_name=failed.type_name,
                    traceback=failed.traceback,
                    status=503,
                )
            raise CallError(APP_STARTING, "Actor() is still being constructed (RAYFINE_EAGER=1)")
        return _json(
            200,
            {
                "status": "ok",
                "env_type": ENV_TYPE,
                "methods": len(served.env.methods),
                "sessions": len(served.sessions) if served.sessions is not None else 0,
                "threads": self._pool.status(),
            },
        )

    async def _open_session(self, served: ServedEnv, body: bytearray) -> Response:
        sessions = _sessions(served)
        wanted = parse_session_request(body, self._max_items)
        assert served.env.constructor is not None  # an env with sessions has an Actor
        check_arguments(served.env.constructor, wanted.args, wanted.kwargs)
        try:
            session = await sessions.open(
                wanted.args, wanted.kwargs, wanted.timeout, wanted.idle_timeout
            )
        except asyncio.TimeoutError:
            message = f"Actor() did not finish within {wanted.timeout:g} s; it was interrupted"
            raise CallError(TIMEOUT, message, type_name="TimeoutError") from None
        except ThreadWaitTimeout as exc:
            message = f"Actor() did not start within {wanted.timeout:g} s: {exc}"
            raise CallError(TIMEOUT, message, type_name="TimeoutError") from None
        return _json(201, {"session": session.id, "max_sessions": sessions.max_sessions})


def _allow(path: str, verb: str, *allowed: str) -> None:
    if verb not in allowed:
        listed = ", ".join(allowed)
        raise _NotAllowed(f"{path} accepts {listed}, not {verb}; routes: {ROUTES}", listed)


class _NotAllowed(CallError):
    def __init__(self, message: str, allowed: str) -> None:
        super().__init__(BAD_REQUEST, message, status=405)
        self.allowed = allowed

    def to_response(self, headers: Tuple[Tuple[str, str], ...] = ()) -> Response:
        return super().to_response((*headers, ("allow", self.allowed)))


def _loaded(served: ServedEnv) -> None:
    if served.env.error is not None:
        raise served.env.error


def _sessions(served: ServedEnv) -> SessionManager:
    if served.sessions is None:
        raise CallError(
            BAD_REQUEST,
            "env.py defines no Actor class, so it has no sessions: its module-level"
            " functions are stateless and are called without one",
        )
    return served.sessions


def _json(status: int, payload: object) -> Response:
    return Response(status, json.dumps(payload).encode())
