"""Forwarding a client's request to its environment's server, over a pooled keep-alive connection.

The client's own token has been checked (by the app); here the
environment's token (``X-Rayfine-Token``) is checked too, and the request
goes on to the container's server with that token as its bearer token,
through the core's asyncio client (one pool per environment, Unix socket
where the runtime mounts one).

What the client sees mirrors local mode:

* the server's answer, status and body, as they are;
* no answer (a dropped connection) when the server's connection broke or
  the environment is unknown: the client then asks for the container's
  state and raises what local mode would (``ContainerDiedError``...);
* ``503 app_starting`` while the server has never answered (the client's
  readiness poll keeps waiting);
* the client hanging up (its timeout, a cancelled task) closes the
  connection to the server, which cancels the call in the container.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import TYPE_CHECKING, Any, Optional

from rayfine_core import errors

from . import asgi
from .asgi import Receive, Scope, Send
from .table import Phase
from .tokens import Client

if TYPE_CHECKING:
    from .app import Gateway

_NO_BODY = ("GET", "HEAD", "DELETE", "OPTIONS")
WATCH_AFTER = 0.05
"""Seconds a call may take before the gateway starts watching for its client hanging up."""


async def forward(
    gateway: Gateway,
    client: Client,
    env_id: str,
    path: str,
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    env = gateway.table.get(env_id, client.name)
    body = await asgi.read_body(receive, gateway.config.max_body_bytes)
    if env is None or env.upstream is None or env.phase is not Phase.RUNNING:
        await asgi.abort(send)
        return
    if env.token is not None:
        given = asgi.header(scope, b"x-rayfine-token") or b""
        if not hmac.compare_digest(given, env.token.encode()):
            await asgi.send_error(send, "unauthorized", "Missing or wrong environment token.")
            return
    gateway.table.renew(env)
    env.calls += 1
    verb = scope["method"]
    query = scope.get("query_string")
    target = f"{path}?{query.decode('latin-1')}" if query else path
    content = None if verb in _NO_BODY and not body else body
    waiting = _Waiting(asyncio.current_task(), receive)
    try:
        response = await env.upstream.request(verb, target, content)
        waiting.task = None
    except asyncio.CancelledError:
        if not waiting.hung_up:
            raise  # cancelled by the server itself (shutting down)
        return  # the client left: the server's connection was closed, cancelling the call
    except errors.RayfineError:
        if env.answered:
            await asgi.abort(send)
        else:  # not listening yet (or a port proxy in front that accepts, then hangs up)
            await asgi.send_error(send, "app_starting", "The environment's server is starting.", 503)
        return
    finally:
        waiting.close()
    env.answered = True
    content_type = response.headers.get("content-type", "application/json").encode("latin-1")
    await asgi.send_bytes(send, response.status_code, response.content, content_type)


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
