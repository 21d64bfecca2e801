"""Forwarding a client's request to its environment's server, over a pooled keep-alive connection.

The client's own token has been checked; here the environment's token
(``X-Rayfine-Token``) is checked too, and the request goes on to the
container's server with that token as its bearer token, through the core's
asyncio client (one pool per environment, a Unix socket where the runtime
mounts one).

What the client sees mirrors local mode:

* the server's answer, status and body, as they are;
* no answer (a dropped connection) when the server's connection broke
  after it had answered before, or the environment is unknown: the client
  then asks for the container's state and raises what local mode would
  (``ContainerDiedError``...);
* ``503 app_starting`` while the server has never answered (the client's
  readiness poll keeps waiting);
* the client hanging up (its timeout, a cancelled task) closes the
  connection to the server, which cancels the call in the container.

:func:`exchange` does the work; the gateway's own server calls it directly
(see :mod:`.server`), and :func:`forward` wraps it for ASGI servers.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from typing import TYPE_CHECKING, Any, Optional

from rayfine_core import errors

from ..messages import error_body
from . import asgi
from .asgi import Receive, Scope, Send
from .table import Phase
from .tokens import Client

if TYPE_CHECKING:
    from .app import Gateway

_NO_BODY = ("GET", "HEAD", "DELETE", "OPTIONS")
WATCH_AFTER = 0.05
"""ASGI only: seconds a call may take before the gateway watches for its client hanging up."""
Outcome = Optional[tuple[int, bytes, bytes]]
"""(status, content type, body) to answer, or None to drop the connection."""


async def exchange(
    gateway: Gateway,
    client: Client,
    env_id: str,
    path: str,
    method: str,
    query: str,
    env_token: Optional[bytes],
    body: bytes,
) -> Outcome:
    """Forward one request of ``client`` to environment ``env_id``; say what to answer.

    Cancelling it (the client hung up) closes the connection to the server.
    """
    env = gateway.table.get(env_id, client.name)
    if env is None or env.upstream is None or env.phase is not Phase.RUNNING:
        return None
    if env.token is not None and not hmac.compare_digest(env_token or b"", env.token.encode()):
        return _error(401, "unauthorized", "Missing or wrong environment token.")
    gateway.table.renew(env)
    env.calls += 1
    target = f"{path}?{query}" if query else path
    content = None if method in _NO_BODY and not body else body
    try:
        response = await env.upstream.request(method, target, content)
    except errors.RayfineError:
        if env.answered:
            return None
        # Not listening yet (or a port proxy in front that accepts, then hangs up).
        return _error(503, "app_starting", "The environment's server is starting.")
    env.answered = True
    content_type = response.headers.get("content-type", "application/json").encode("latin-1")
    return response.status_code, content_type, response.content


def no_route(method: str, path: str) -> bytes:
    return json.dumps(error_body("bad_request", f"No route {method} {path}.")).encode()


def unauthorized() -> tuple[int, bytes, bytes]:
    return _error(401, "unauthorized", "Missing or unknown bearer token.")


def _error(status: int, kind: str, message: str) -> tuple[int, bytes, bytes]:
    return status, b"application/json", json.dumps(error_body(kind, message)).encode()


async def forward(
    gateway: Gateway,
    client: Client,
    env_id: str,
    path: str,
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    """:func:`exchange` for an ASGI server (the gateway's own server does not come here)."""
    body = await asgi.read_body(receive, gateway.config.max_body_bytes)
    query = scope.get("query_string", b"").decode("latin-1")
    token = asgi.header(scope, b"x-rayfine-token")
    waiting = _Waiting(asyncio.current_task(), receive)
    try:
        outcome = await exchange(gateway, client, env_id, path, scope["method"], query, token, body)
        waiting.task = None
    except asyncio.CancelledError:
        if not waiting.hung_up:
            raise  # cancelled by the server itself (shutting down)
        return  # the client left: the server's connection was closed, cancelling the call
    finally:
        waiting.close()
    if outcome is None:
        await asgi.abort(send)
    else:
        await asgi.send_bytes(send, outcome[0], outcome[2], outcome[1])


class _Waiting:
    """Cancels the forwarding task if the client hangs up before the server's answer.

    Most calls answer within milliseconds, so the watch (a task reading the
    ASGI channel) starts only after :data:`WATCH_AFTER` seconds: a call that
    ends sooner has nothing left to cancel.
    """

    def __init__(self, task: Optional[asyncio.Task[Any]], receive: Receive) -> None:
        self.task = task
        self.hung_up = False
        self._receive = receive
        self._watch: Optional[asyncio.Task[None]] = None
        self._timer = asyncio.get_running_loop().call_later(WATCH_AFTER, self._start)

    def _start(self) -> None:
        self._watch = asyncio.ensure_future(self._cancel_on_hangup())

    async def _cancel_on_hangup(self) -> None:
        await asgi.hangup(self._receive)
        if self.task is not None:
            self.hung_up = True
            self.task.cancel()

    def close(self) -> None:
        self._timer.cancel()
        if self._watch is not None:
            self._watch.cancel()
