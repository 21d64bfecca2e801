"""The gateway's REST routes about environments: info, list, heartbeat, state, stop, logs."""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any, Optional
from urllib.parse import parse_qs

from rayfine_core import errors
from rayfine_core.runtime import labels as label_keys
from rayfine_core.runtime.types import ContainerRecord

from .. import messages
from . import asgi, lifecycle, logstream
from .asgi import Receive, Scope, Send
from .config import VERSION
from .engine import CLIENT_LABEL, GATEWAY_LABEL
from .table import Env, Phase
from .tokens import Client

if TYPE_CHECKING:
    from .app import Gateway

MAX_HEARTBEAT_BODY = 1024 * 1024


async def info(
    gateway: Gateway, client: Client, scope: Scope, receive: Receive, send: Send
) -> None:
    """``GET /v1/info``: what the gateway runs on, and what this client may do there."""
    runtime = gateway.engine.runtime
    capabilities = dataclasses.asdict(runtime.capabilities)
    offered = set(runtime.capabilities.isolation)
    capabilities["isolation"] = sorted(
        offered & set(client.isolation) if client.isolation else offered
    )
    capabilities["builds"] = runtime.capabilities.builds and client.build
    await asgi.send_json(
        send,
        200,
        {
            "version": VERSION,
            "gateway": gateway.config.name,
            "runtime": runtime.name,
            "engine": gateway.engine_version,
            "lease_timeout": gateway.config.lease_timeout,
            "capabilities": capabilities,
            "client": client.name,
            "policy": client.quota(),
            "usage": {"envs": len(gateway.table.of(client.name))},
        },
    )


async def list_envs(
    gateway: Gateway, client: Client, scope: Scope, receive: Receive, send: Send
) -> None:
    """``GET /v1/envs?labels=JSON``: this client's environments carrying all those labels."""
    wanted = _query(scope).get("labels")
    try:
        labels = json.loads(wanted) if wanted else {}
    except ValueError:
        labels = None
    if not isinstance(labels, dict):
        raise errors.ValidationError("labels must be a JSON object of strings.")
    envs = gateway.table.matching(client.name, labels)
    statuses = await _statuses(gateway, client) if envs else {}
    records = [
        messages.encode_record(
            ContainerRecord(
                id=env.id,
                name=env.name,
                image=env.image,
                status=env.phase.value
                if env.phase is not Phase.RUNNING
                else statuses.get(env.id, "removed"),
                labels=env.labels,
                runtime="remote",
                created=env.created,
            )
        )
        for env in envs
    ]
    await asgi.send_json(send, 200, {"containers": records})


async def _statuses(gateway: Gateway, client: Client) -> dict[str, str]:
    """The engine's status of each of this client's containers, in one engine call."""
    runtime = gateway.engine.runtime
    found = await gateway.engine.run(
        runtime.list_containers,
        {GATEWAY_LABEL: gateway.config.name, CLIENT_LABEL: client.name},
    )
    return {r.labels.get(label_keys.ENV_ID, ""): r.status for r in found}


async def heartbeat(
    gateway: Gateway, client: Client, scope: Scope, receive: Receive, send: Send
) -> None:
    """``POST /v1/heartbeat {"ids": [...]}``: renew leases; say which ids are unknown."""
    try:
        ids = json.loads(await asgi.read_body(receive, MAX_HEARTBEAT_BODY)).get("ids")
    except (ValueError, AttributeError):
        ids = None
    if not isinstance(ids, list):
        raise errors.ValidationError('A heartbeat is {"ids": [...]}.')
    unknown = []
    for env_id in ids:
        env = gateway.table.get(str(env_id), client.name)
        if env is None:
            unknown.append(env_id)
        else:
            gateway.table.renew(env)
    await asgi.send_json(send, 200, {"unknown": unknown})


async def env_route(
    gateway: Gateway,
    client: Client,
    env_id: str,
    rest: str,
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    """``/v1/envs/ID`` (GET state, DELETE) and ``/v1/envs/ID/logs``."""
    verb = scope["method"]
    env = gateway.table.get(env_id, client.name)
    if (verb, rest) not in (("GET", ""), ("DELETE", ""), ("GET", "logs")):
        await asgi.send_error(send, "bad_request", f"No route {verb} {scope['path']}.", 404)
        return
    if env is None:
        if verb == "DELETE":  # idempotent: gone (or never this client's) is stopped
            await asgi.send_json(send, 200, {"stopped": None})
        else:
            await asgi.send_error(send, "unknown_environment", f"No environment {env_id!r}.")
        return
    gateway.table.renew(env)
    if verb == "DELETE":
        timeout = _float(_query(scope).get("timeout"), 5.0)
        await lifecycle.stop(gateway, env, min(timeout, 60.0), "client")
        await asgi.send_json(send, 200, {"stopped": env.id})
    elif rest == "logs":
        await _logs(gateway, client, env, scope, receive, send)
    else:
        await asgi.send_json(send, 200, await _state(gateway, env))


async def _state(gateway: Gateway, env: Env) -> dict[str, Any]:
    if env.handle is None:
        state = {"running": True, "exit_code": None, "oom_killed": False, "status": "starting"}
    else:
        found = await gateway.engine.run(gateway.engine.runtime.health, env.handle.id)
        state = messages.encode_state(found)
    return {"state": state, "name": env.name, "image": env.image, "calls": env.calls}


async def _logs(
    gateway: Gateway, client: Client, env: Env, scope: Scope, receive: Receive, send: Send
) -> None:
    query = _query(scope)
    tail = max(0, min(int(_float(query.get("tail"), 50)), 100_000))
    if env.handle is None:
        await asgi.send_json(send, 200, {"logs": ""})
    elif query.get("follow") == "1":
        await logstream.follow(gateway, client, env, tail, receive, send)
    else:
        text = await gateway.engine.run(gateway.engine.runtime.logs, env.handle.id, tail)
        await asgi.send_json(send, 200, {"logs": text})


def _query(scope: Scope) -> dict[str, str]:
    raw = scope.get("query_string", b"").decode("latin-1")
    return {k: v[-1] for k, v in parse_qs(raw).items()}


def _float(text: Optional[str], default: float) -> float:
    try:
        value = float(text) if text is not None else default
    except ValueError:
        raise errors.ValidationError(f"Expected a number, got {text!r}.") from None
    if value != value or value < 0:
        raise errors.ValidationError(f"Expected a number >= 0, got {text!r}.")
    return value
