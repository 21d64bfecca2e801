"""A channel: the way to one server, with a blocking client and one asyncio client per event loop.

An environment holds one channel per container it runs; a new container
(restart) gets a new channel, so a call always talks to the container it
started with.  A forked child never reuses its parent's connections: the
channel notices the fork and opens its own.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Optional

from ..runtime.types import Endpoint
from .client import AsyncClient, Client

_fork_epoch = 0


def _after_fork_in_child() -> None:
    global _fork_epoch
    _fork_epoch += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Channel:
    """Clients for one endpoint, made on first use; safe to share between threads and loops."""

    def __init__(self, endpoint: Endpoint, token: Optional[str]) -> None:
        self.endpoint = endpoint
        self._token = token
        self._lock = threading.RLock()  # a signal handler may close it from the holder
        self._epoch = _fork_epoch
        self._client: Optional[Client] = None
        self._aclients: dict[asyncio.AbstractEventLoop, AsyncClient] = {}

    def __repr__(self) -> str:
        return f"<Channel {self.endpoint}>"

    def client(self) -> Client:
        """The blocking client."""
        self._check_fork()
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = Client(self.endpoint, self._token)
                client = self._client
        return client

    def aclient(self) -> AsyncClient:
        """The asyncio client of the running event loop (an asyncio object belongs to one loop)."""
        self._check_fork()
        loop = asyncio.get_running_loop()
        client = self._aclients.get(loop)
        if client is not None:
            return client
        with self._lock:
            for old in [old for old in self._aclients if old.is_closed()]:
                del self._aclients[old]  # their connections died with their loop
            client = self._aclients.get(loop)
            if client is None:
                client = self._aclients[loop] = AsyncClient(self.endpoint, self._token)
        return client

    def _check_fork(self) -> None:
        if self._epoch != _fork_epoch:  # inherited sockets are the parent's: never touch them
            self._lock = threading.RLock()
            self._client, self._aclients, self._epoch = None, {}, _fork_epoch

    def close(self) -> None:
        """Close the blocking client's connections and drop the asyncio clients.

        Callable from any thread: an asyncio client cannot be closed outside
        its loop, so its sockets close when it is collected.
        """
        with self._lock:
            client, self._client = self._client, None
            self._aclients = {}
        if client is not None and self._epoch == _fork_epoch:
            client.close()

    async def aclose(self) -> None:
        """Like :meth:`close`, closing the running loop's client properly first."""
        with self._lock:
            aclient = self._aclients.pop(asyncio.get_running_loop(), None)
        if aclient is not None:
            await aclient.aclose()
        self.close()
