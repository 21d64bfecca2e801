"""Starting and stopping environments on the gateway, and stopping those whose client went silent.

A start and a stop are tasks of their own, recorded on the environment:
whoever else asks to stop it (its client, the lease reaper, a revoked
token, shut-down) waits for the same stop, and a stop asked during the
start waits for the start to finish, so nothing the runtime creates is
left behind.  A client that disconnects mid-start does not cancel it: the
environment is then recorded with a lease nobody renews, and reaped.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Awaitable

from rayfine_core import errors
from rayfine_core.runtime.types import StartRequest
from rayfine_core.transport.client import AsyncClient

from .. import messages
from . import asgi, policy
from .asgi import Receive, Scope, Send
from .table import Env, Phase
from .tokens import Client

if TYPE_CHECKING:
    from .app import Gateway

log = logging.getLogger("rayfine.gateway")
MAX_START_BODY = 2 * 1024 * 1024


async def start_route(
    gateway: Gateway, client: Client, scope: Scope, receive: Receive, send: Send
) -> None:
    """``POST /v1/envs``: check, admit, start; answer the id once the container runs."""
    body = await asgi.read_body(receive, MAX_START_BODY)
    try:
        data = json.loads(body)
    except ValueError:
        raise errors.ValidationError("The start request is not JSON.") from None
    request = messages.decode_start(data)
    try:
        checked = policy.check_start(client, request, gateway.engine.runtime.capabilities)
        env = gateway.table.admit(client, request.name, request.image, request.labels)
    except errors.RayfineError as exc:
        gateway.audit.log("start_refused", client=client.name, image=request.image, reason=str(exc))
        raise
    env.token = request.token
    env.starting = asyncio.ensure_future(_start(gateway, env, checked))
    await asyncio.shield(env.starting)  # the start outlives a client that goes away
    await asgi.send_json(
        send,
        201,
        {"id": env.id, "name": env.name, "lease_timeout": gateway.config.lease_timeout},
    )


async def _start(gateway: Gateway, env: Env, request: StartRequest) -> None:
    engine = gateway.engine
    try:
        backing = engine.prepare(request, env)
        env.handle = await engine.start(backing)
    except BaseException as exc:
        gateway.table.remove(env)
        try:
            await engine.stop(env, 0.0)  # its run dir; anything a half-done start left
        except errors.RayfineError as cleanup:
            log.warning("rayfine gateway: cleaning up a failed start of %s: %s", env.id, cleanup)
        gateway.audit.log(
            "start_failed", client=env.client, env=env.id, image=env.image, error=_short(exc)
        )
        if isinstance(exc, errors.ImageNotFoundError):
            raise errors.ImageNotFoundError(not_found(env.image)) from exc
        raise
    env.upstream = AsyncClient(env.handle.endpoint, env.token)
    env.phase = Phase.RUNNING
    gateway.table.renew(env)
    gateway.audit.log(
        "start",
        client=env.client,
        env=env.id,
        name=env.name,
        image=env.image,
        container=env.handle.name,
        env_vars=len(request.env),
        limits={
            "mem": request.limits.mem_limit,
            "cpus": request.limits.cpu_limit,
            "pids": request.limits.pids_limit,
        },
        network=request.network,
        isolation=request.isolation,
    )


def not_found(image: str) -> str:
    return (
        f"Image {image!r} is not on the gateway's host; build it there with"
        f" build_image_from_env(ENV_DIR, {image!r}, runtime='remote') (if this client may"
        " build) or ask the gateway's admin."
    )


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


async def stop(gateway: Gateway, env: Env, timeout: float, reason: str) -> None:
    """Stop ``env`` (or wait for the stop already under way).

    :raises EngineUnavailableError: the runtime could not be reached; the
        environment stays recorded, so a later stop retries.
    """
    if env.stopping is None or (env.stopping.done() and env.stopping.exception() is not None):
        env.stopping = asyncio.ensure_future(_stop(gateway, env, timeout, reason))
    await asyncio.shield(env.stopping)


async def _stop(gateway: Gateway, env: Env, timeout: float, reason: str) -> None:
    previous = env.phase
    env.phase = Phase.STOPPING
    if env.starting is not None:
        await asyncio.wait({env.starting})
    try:
        await gateway.engine.stop(env, timeout)
    except BaseException:
        env.phase = previous
        raise
    gateway.table.remove(env)
    if env.upstream is not None:
        await env.upstream.aclose()
    gateway.audit.log("stop", client=env.client, env=env.id, reason=reason, calls=env.calls)


async def stop_all(gateway: Gateway, reason: str) -> None:
    envs = gateway.table.all()
    outcomes = await asyncio.gather(
        *(stop(gateway, env, 0.0, reason) for env in envs), return_exceptions=True
    )
    for env, outcome in zip(envs, outcomes):
        if isinstance(outcome, BaseException):
            log.warning("rayfine gateway: could not stop %s: %s", env.id, outcome)


async def reap_expired(gateway: Gateway) -> None:
    """Forever: stop the environments whose lease ran out (their client is gone)."""
    every = min(1.0, gateway.config.lease_timeout / 4)
    while True:
        await asyncio.sleep(every)
        for env in gateway.table.expired():
            if env.stopping is None or env.stopping.done():  # a failed stop is retried
                in_background(stop(gateway, env, 0.0, "lease expired"))


_background: set[asyncio.Future[None]] = set()  # the loop keeps only weak references


def in_background(stopping: Awaitable[None]) -> None:
    """Run a stop without awaiting it; its failure is logged, never lost with the task."""
    task = asyncio.ensure_future(_quietly(stopping))
    _background.add(task)
    task.add_done_callback(_background.discard)


async def _quietly(stopping: Awaitable[None]) -> None:
    try:
        await stopping
    except errors.RayfineError as exc:
        log.warning(
            "rayfine gateway: a background stop failed (a lease-expired one is retried): %s", exc
        )
