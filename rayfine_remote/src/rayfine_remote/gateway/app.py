"""The gateway as one ASGI application: authenticate, route, and own the environments' lives.

Routes (every one needs ``Authorization: Bearer <client token>``)::

    GET    /v1/info                      the gateway, its runtime, this client's policy and usage
    POST   /v1/images/inspect            {"image"} -> {"labels", "id"}   (allow-listed images only)
    POST   /v1/images/build              a tar (see rayfine_remote.upload) -> NDJSON output lines
    POST   /v1/envs                      a start request -> {"id", "name", "lease_timeout"}
    GET    /v1/envs?labels=JSON          this client's environments carrying those labels
    POST   /v1/heartbeat                 {"ids": [...]} renews their leases -> {"unknown": [...]}
    GET    /v1/envs/ID                   its container's state
    DELETE /v1/envs/ID?timeout=S         stop and remove it (idempotent)
    GET    /v1/envs/ID/logs?tail=N[&follow=1]
    *      /v1/envs/ID/proxy/PATH        forwarded to the environment's own server

An environment another client started answers exactly like one that does
not exist.  The engine itself is never exposed: only these routes are.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any, Optional

from rayfine_core import errors
from rayfine_core.runtime.base import Runtime

from ..messages import API, error_of_exception
from . import asgi, images, lifecycle, proxy, routes
from .asgi import Receive, Scope, Send
from .audit import Audit
from .config import GatewayConfig
from .engine import Engine
from .table import Table
from .tokens import Client, Tokens, load

log = logging.getLogger("rayfine.gateway")


class Gateway:
    """The ASGI application and the services its routes share."""

    def __init__(self, config: GatewayConfig, runtime: Runtime, audit: Optional[Audit] = None):
        self.config = config
        self.tokens: Tokens = load(config.tokens_file)
        self.table = Table(config.lease_timeout)
        self.engine = Engine(runtime, config.name, config.engine_threads)
        self.audit = audit or Audit(config.audit_log)
        self.engine_version = "unknown"
        self.followers: dict[str, int] = {}
        self._reaper: Optional[asyncio.Task[None]] = None

    # -- ASGI ------------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = self._authenticate(scope)
        if client is None:
            await asgi.send_error(send, "unauthorized", "Missing or unknown bearer token.")
            return
        path: str = scope["path"]
        try:
            if path.startswith(f"{API}/envs/"):
                env_id, _, rest = path[len(API) + 6 :].partition("/")
                if rest == "proxy" or rest.startswith("proxy/"):
                    await proxy.forward(self, client, env_id, rest[5:] or "/", scope, receive, send)
                else:
                    await routes.env_route(self, client, env_id, rest, scope, receive, send)
            else:
                await self._top_route(client, path, scope, receive, send)
        except asgi.BodyTooLarge:
            await asgi.send_error(send, "bad_request", "The request body is too large.", 413)
        except asgi.ClientGone:
            return
        except errors.RayfineError as exc:
            status, body = error_of_exception(exc)
            await asgi.send_json(send, status, body)

    async def _top_route(
        self, client: Client, path: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        verb = scope["method"]
        handler = {
            ("GET", f"{API}/info"): routes.info,
            ("GET", f"{API}/envs"): routes.list_envs,
            ("POST", f"{API}/envs"): lifecycle.start_route,
            ("POST", f"{API}/heartbeat"): routes.heartbeat,
            ("POST", f"{API}/images/inspect"): images.inspect,
            ("POST", f"{API}/images/build"): images.build,
        }.get((verb, path))
        if handler is None:
            await asgi.send_error(send, "bad_request", f"No route {verb} {path}.", 404)
            return
        await handler(self, client, scope, receive, send)

    def _authenticate(self, scope: Scope) -> Optional[Client]:
        return self.authenticate(asgi.header(scope, b"authorization"), peer(scope))

    def authenticate(self, authorization: Optional[bytes], peer: str) -> Optional[Client]:
        """The client whose bearer token ``authorization`` holds, or None (logged, rate-limited)."""
        client = None
        if authorization is not None:
            scheme, _, token = authorization.partition(b" ")
            if scheme.lower() == b"bearer" and token:
                client = self.tokens.find(token.strip().decode("latin-1"))
        if client is None:
            self.audit.refused(peer, "no token" if authorization is None else "unknown token")
        return client

    # -- start-up and shut-down ------------------------------------------------------------------
    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        """Reap what an earlier run of this gateway left, then start the lease reaper."""
        self.engine_version = await self.engine.run(self.engine.runtime.version)
        for record in await self.engine.leftovers():
            await self.engine.remove(record)
            self.audit.log("reaped", container=record.name, reason="left by an earlier run")
        self._reaper = asyncio.ensure_future(lifecycle.reap_expired(self))
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.reload_tokens)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread (tests run the gateway in one): reload by calling it
        self.audit.log(
            "started",
            gateway=self.config.name,
            runtime=self.engine.runtime.name,
            clients=len(self.tokens.clients),
            lease_timeout=self.config.lease_timeout,
        )

    async def shutdown(self) -> None:
        """Stop every environment: after a restart nobody could reach them."""
        if self._reaper is not None:
            self._reaper.cancel()
        await lifecycle.stop_all(self, "gateway shutting down")
        self.audit.log("stopped", gateway=self.config.name)

    def reload_tokens(self) -> None:
        """Re-read the tokens file; environments of removed clients are stopped."""
        try:
            tokens = load(self.config.tokens_file)
        except errors.ValidationError as exc:
            self.audit.log("tokens_reload_failed", error=str(exc))
            return
        self.tokens = tokens
        gone = [env for env in self.table.all() if env.client not in tokens.clients]
        for env in gone:
            lifecycle.in_background(lifecycle.stop(self, env, 0.0, "client removed"))
        self.audit.log("tokens_reloaded", clients=len(tokens.clients), stopping=len(gone))

    def client_named(self, name: str) -> Optional[Client]:
        return self.tokens.clients.get(name)


def peer(scope: Scope) -> str:
    where: Any = scope.get("client")
    return f"{where[0]}:{where[1]}" if where else "unix"
