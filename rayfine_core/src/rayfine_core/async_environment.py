"""The object ``aload_env`` returns: an environment called with ``await``.

It shares identity, argument checking and every flow with
:class:`~rayfine_core.Environment`; only the I/O differs.  HTTP goes through
one pooled :class:`~rayfine_core.client.AsyncClient` per event loop (made on
first use in that loop), and engine calls run in worker threads, so nothing
blocks the loop.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable, Mapping, Optional, Sequence

from . import errors, flows, lifecycle, steps
from .client import AsyncClient
from .environment import BaseEnvironment
from .options import EnvOptions
from .protocol import MethodInfo
from .wire import Response


class AsyncEnvironment(BaseEnvironment):
    """A running environment whose methods are coroutines: ``await env.evaluate(...)``.

    Many calls may be in flight at once (``asyncio.gather``); they share one
    connection pool per event loop.
    """

    def __init__(self, options: EnvOptions, launch: lifecycle.Launch) -> None:
        super().__init__(options, launch)
        self._clients: dict[asyncio.AbstractEventLoop, AsyncClient] = {}
        self._clients_lock = threading.Lock()

    def __getattr__(self, name: str) -> Callable[..., Any]:
        return self._remote_method(name)

    async def call_method(
        self,
        method: str,
        args: Sequence[Any] = (),
        kwargs: Optional[Mapping[str, Any]] = None,
        timeout: Optional[float] = None,
    ) -> Any:
        """Call ``method`` with ``args``/``kwargs``; every name in kwargs is forwarded."""
        return await steps.arun(flows.call(self, method, args, kwargs or {}, timeout), self)

    async def list_methods(self) -> list[MethodInfo]:
        """The callable methods with their signatures and docstrings."""
        return await steps.arun(flows.list_methods(self), self)

    async def is_ready(self) -> bool:
        """True if the container runs and its server answers its health check."""
        return await steps.arun(flows.is_ready(self), self)

    async def wait_ready(self, timeout: float) -> None:
        """Poll until the server answers (or fail fast if the container died)."""
        await steps.arun(flows.wait_ready(self, timeout), self)

    async def cleanup(self) -> None:
        """Stop and remove the container. Safe to call more than once."""
        client = self._pop_loop_client()
        try:
            await steps.in_thread(self.stop_container, "cleanup")
        finally:
            if client is not None:
                await client.aclose()

    async def __aenter__(self) -> "AsyncEnvironment":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.cleanup()

    # -- how steps are performed (see rayfine_core.steps) ---------------------------
    async def _ahttp(self, step: steps.Http) -> Response:
        client = self._loop_client()
        if step.verb == "GET":
            return await client.get(step.path, step.timeout or 10.0)
        return await client.post(step.path, step.body or b"", step.timeout)

    async def _areconnect(self) -> None:
        """The endpoint changed (first start, restart): later calls make new clients."""
        client = self._pop_loop_client()
        self._close_clients()
        if client is not None:
            await client.aclose()

    def _loop_client(self) -> AsyncClient:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is not None:
            return client
        handle = self._launch.handle
        if self._closed or handle is None:
            raise errors.EnvironmentClosedError(f"Environment {self.id} has no running container.")
        with self._clients_lock:
            # Forget clients of closed loops; their connections died with the loop.
            for old in [old for old in self._clients if old.is_closed()]:
                del self._clients[old]
            client = self._clients.get(loop)
            if client is None:
                client = self._clients[loop] = AsyncClient(handle.endpoint, self._launch.token)
        return client

    def _pop_loop_client(self) -> Optional[AsyncClient]:
        with self._clients_lock:
            return self._clients.pop(asyncio.get_running_loop(), None)

    def _close_clients(self) -> None:
        # Called from any thread (cleanup, interpreter exit): a client cannot be
        # closed outside its loop, so it is dropped and its sockets close with it.
        with self._clients_lock:
            self._clients.clear()
