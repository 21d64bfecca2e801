"""The gateway's own runtime, used from its event loop: start, stop and reap containers in threads.

Runtime methods block (engine SDKs), so each runs in a worker thread of
this module's pool and the event loop only awaits it.  Containers carry the
gateway's labels only (owner, runtime, env id, this gateway's pid and
name), never the client's: a client cannot mark its container detached or
as someone else's, and a gateway that restarts finds what it started by
the ``rayfine.gateway`` label.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import logging
from typing import Any, Callable, Optional, TypeVar

from rayfine_core.environment import rundir
from rayfine_core.runtime import labels
from rayfine_core.runtime.base import Runtime
from rayfine_core.runtime.reaper import owned_by, owner_labels
from rayfine_core.runtime.types import (
    RUN_MOUNT,
    SOCKET_NAME,
    TOKEN_NAME,
    ContainerHandle,
    ContainerRecord,
    StartRequest,
)

from .table import Env

T = TypeVar("T")
log = logging.getLogger("rayfine.gateway")
GATEWAY_LABEL = "rayfine.gateway"
"""The name of the gateway that started a container."""
CLIENT_LABEL = "rayfine.gateway.client"
"""The client (token name, never the token) it was started for: for the host's admin."""


class Engine:
    """The gateway's runtime, awaited from the event loop.

    :param runtime: the runtime that runs the containers (docker, podman, ...).
    :param gateway: this gateway's name (its containers' ``rayfine.gateway`` label).
    :param threads: worker threads for engine calls.
    """

    def __init__(self, runtime: Runtime, gateway: str, threads: int = 32) -> None:
        self.runtime = runtime
        self.gateway = gateway
        self._pool = concurrent.futures.ThreadPoolExecutor(threads, "rayfine-gateway-engine")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a worker thread.

        A cancelled caller does not stop the thread; the outcome is still
        collected (so a container being started is always known).
        """
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, functools.partial(fn, *args))
        return await asyncio.shield(future)

    def prepare(self, request: StartRequest, env: Env) -> StartRequest:
        """The request the runtime gets for ``env``: the gateway's name, labels, token delivery.

        Function-based servers (they have a token) listen on a Unix socket in
        a private run directory when the runtime can mount one: the gateway
        then reaches them without any port.
        """
        own = {**owner_labels(env.id, self.runtime.name), GATEWAY_LABEL: self.gateway}
        own[CLIENT_LABEL] = env.client
        backing = dataclasses.replace(
            request,
            name=f"rayfine-gw-{env.id}",
            labels=own,
            env=dict(request.env),
            host_port=None,
            run_dir=None,
        )
        token = request.token
        if token is not None and self.runtime.capabilities.unix_socket:
            env.run_dir = backing.run_dir = rundir.create(env.id)
            rundir.write_token(env.run_dir, token)
            backing.env["RAYFINE_TOKEN_FILE"] = f"{RUN_MOUNT}/{TOKEN_NAME}"
            backing.env["RAYFINE_UDS"] = f"{RUN_MOUNT}/{SOCKET_NAME}"
        # Elsewhere the backing runtime delivers request.token itself (never as a variable).
        return backing

    async def start(self, request: StartRequest) -> ContainerHandle:
        """Start a prepared request (raises as :meth:`Runtime.start`)."""
        return await self.run(self.runtime.start, request)

    async def stop(self, env: Env, timeout: float) -> None:
        """Remove ``env``'s container and run directory (raises as :meth:`Runtime.stop`)."""
        if env.handle is not None:
            await self.run(self.runtime.stop, env.handle.id, timeout)
        else:  # a start that failed half-way may have left something with its labels
            for record in await self.run(self.runtime.list_containers, self._labels(env.id)):
                await self.run(self.runtime.stop, record.id, 0.0)
        if env.run_dir is not None:
            rundir.remove(env.run_dir)

    def _labels(self, env_id: Optional[str] = None) -> dict[str, str]:
        found = {**owned_by(self.runtime.name), GATEWAY_LABEL: self.gateway}
        if env_id is not None:
            found[labels.ENV_ID] = env_id
        return found

    async def leftovers(self) -> list[ContainerRecord]:
        """Containers this gateway started before it (re)started: nobody can reach them now."""
        return await self.run(self.runtime.list_containers, self._labels())

    async def remove(self, record: ContainerRecord) -> None:
        await self.run(self.runtime.stop, record.id, 0.0)
        rundir.forget(record)

    def close(self) -> None:
        self._pool.shutdown(wait=False)
