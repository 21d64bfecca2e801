"""The ``remote`` runtime: environments run by a Rayfine gateway on another host.

It implements the core's :class:`~rayfine_core.runtime.Runtime` by calling
the gateway's REST routes, so the core's whole life of an environment
(readiness, typed errors, restarts, cleanup, the asyncio face) works
unchanged.  :meth:`RemoteRuntime.start` returns an endpoint *on the
gateway* (``/v1/envs/<id>/proxy``, the client token in ``Authorization``);
the core's client then sends the environment's own token as
``X-Rayfine-Token`` and the gateway forwards each call to the container.

Nothing here imports an engine SDK; the gateway is this runtime's engine,
so the gateway out of reach is :class:`~rayfine_core.errors.EngineUnavailableError`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from typing import Any, Iterator, Mapping, Optional
from urllib.parse import quote, urlencode

from rayfine_core import errors
from rayfine_core.runtime.base import Capabilities, Runtime, engine_timeout
from rayfine_core.runtime.types import (
    BuildRequest,
    ContainerHandle,
    ContainerRecord,
    ContainerState,
    StartRequest,
    check_reference,
)

from . import messages, upload
from .control import Control
from .lease import LeaseKeeper
from .url import TOKEN_VARIABLE, URL_VARIABLE, parse

BUILD_IDLE_TIMEOUT = 3600.0
"""Seconds a build may print nothing (a long RUN step) before the gateway counts as lost."""

FALLBACK = Capabilities(
    unix_socket=False,
    host_ports=False,
    local_host=False,
    follow_logs=True,
    engine_url_option="url",
)
"""What the runtime claims before it has asked the gateway (nothing that needs this host)."""


class RemoteRuntime(Runtime):
    """Environments on the gateway at ``url``, as the client ``token`` may run them.

    :param url: the gateway (default ``RAYFINE_REMOTE_URL``); see :mod:`rayfine_remote.url`.
    :param token: this client's token (default ``RAYFINE_REMOTE_TOKEN``).
    :raises ValidationError: no URL or token, or a malformed URL.
    """

    name = "remote"

    def __init__(self, url: Optional[str] = None, token: Optional[str] = None) -> None:
        self.gateway = parse(url or os.environ.get(URL_VARIABLE, ""))
        token = token or os.environ.get(TOKEN_VARIABLE, "")
        if not token:
            raise errors.ValidationError(
                f"No token for the gateway at {self.gateway.url}: pass token=... or set"
                f" {TOKEN_VARIABLE} (the gateway's admin creates one with `rayfine token add`)."
            )
        self._control = Control(self.gateway, token)
        self._leases = LeaseKeeper(self._heartbeat)
        self._info: Optional[dict[str, Any]] = None
        self._lock = threading.Lock()
        self.closed = False

    def __repr__(self) -> str:
        return f"<RemoteRuntime {self.gateway.url}>"

    # -- what the gateway offers ----------------------------------------------------------------
    @property
    def capabilities(self) -> Capabilities:  # type: ignore[override]  # per gateway and token
        """The gateway runtime's capabilities as this token may use them (a fallback until asked)."""
        info = self._info
        if info is None:
            return FALLBACK
        offered = dict(info.get("capabilities") or {})
        fields = {f.name for f in dataclasses.fields(Capabilities)}
        chosen = {k: v for k, v in offered.items() if k in fields}
        chosen["isolation"] = frozenset(chosen.get("isolation") or ("container",))
        chosen.update(unix_socket=False, host_ports=False, local_host=False, follow_logs=True)
        chosen.update(engine_url_option="url", engine_restartable=False)
        return dataclasses.replace(FALLBACK, **{k: v for k, v in chosen.items() if k in fields})

    def info(self) -> dict[str, Any]:
        """What the gateway says about itself and this token (asked once, then remembered)."""
        if self._info is None:
            answer = self._control.json("GET", f"{messages.API}/info", timeout=engine_timeout())
            with self._lock:
                self._info = answer
        assert self._info is not None
        return self._info

    def version(self) -> str:
        self._info = None  # a fresh answer: the gateway may have restarted meanwhile
        info = self.info()
        return (
            f"rayfine gateway {info.get('version')} at {self.gateway.url}"
            f" ({info.get('runtime')}: {info.get('engine')})"
        )

    # -- images ---------------------------------------------------------------------------------
    def image_labels(self, image: str) -> dict[str, str]:
        return dict(self._inspect(image)["labels"])

    def image_id(self, image: str) -> str:
        return str(self._inspect(image)["id"])

    def _inspect(self, image: str) -> dict[str, Any]:
        check_reference(image)
        self.info()
        body = json.dumps({"image": image}).encode()
        return dict(self._control.json("POST", f"{messages.API}/images/inspect", body))

    def build(self, request: BuildRequest) -> str:
        emit = request.on_output or (lambda line: None)
        spool = upload.pack(request)
        try:
            length = os.fstat(spool.fileno()).st_size
            pieces = self._control.stream(
                "POST",
                f"{messages.API}/images/build",
                spool,
                idle_timeout=BUILD_IDLE_TIMEOUT,
                length=length,
            )
            image_id = _read_build(pieces, emit, self.gateway.url)
        finally:
            spool.close()
        return image_id

    # -- environments ---------------------------------------------------------------------------
    def start(self, request: StartRequest) -> ContainerHandle:
        check_reference(request.image)
        self.info()
        answer = self._control.json(
            "POST",
            f"{messages.API}/envs",
            messages.encode_start(request),
            timeout=2 * engine_timeout() + 10,
        )
        env_id = str(answer["id"])
        self._leases.add(env_id, float(answer.get("lease_timeout") or 60))
        endpoint = dataclasses.replace(
            self._control.endpoint, path_prefix=f"{_env_path(env_id)}/{messages.PROXY}"
        )
        return ContainerHandle(env_id, request.name, endpoint, self.name)

    def health(self, container_id: str) -> ContainerState:
        answer = self._control.json(
            "GET", _env_path(container_id), timeout=engine_timeout() + 5, missing_ok=True
        )
        if answer is None:
            return ContainerState(running=False, status="removed")
        return messages.decode_state(answer["state"])

    def logs(self, container_id: str, tail: int = 50) -> str:
        path = f"{_env_path(container_id)}/logs?{urlencode({'tail': int(tail)})}"
        answer = self._control.json("GET", path, timeout=engine_timeout() + 5, missing_ok=True)
        return "" if answer is None else str(answer["logs"])

    def follow_logs(self, container_id: str, tail: int = 50) -> Iterator[str]:
        query = urlencode({"tail": int(tail), "follow": 1})
        pieces = self._control.stream(
            "GET", f"{_env_path(container_id)}/logs?{query}", missing_ok=True
        )
        pending = b""
        for piece in pieces:
            pending += piece
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line.decode("utf-8", errors="replace") + "\n"
        if pending:
            yield pending.decode("utf-8", errors="replace")

    def stop(self, container_id: str, timeout: float = 5.0) -> None:
        path = f"{_env_path(container_id)}?{urlencode({'timeout': float(timeout)})}"
        self._control.json("DELETE", path, timeout=timeout + engine_timeout() + 5)
        self._leases.discard(container_id)

    def list_containers(self, labels: Mapping[str, str]) -> list[ContainerRecord]:
        query = urlencode({"labels": json.dumps(dict(labels))})
        answer = self._control.json(
            "GET", f"{messages.API}/envs?{query}", timeout=engine_timeout() + 5
        )
        return [messages.decode_record(item, self.name) for item in answer["containers"]]

    def _heartbeat(self, body: bytes) -> dict:
        return dict(self._control.json("POST", f"{messages.API}/heartbeat", body, timeout=10))

    def close(self) -> None:
        self.closed = True
        self._leases.close()
        self._control.close()


def _env_path(env_id: str) -> str:
    return f"{messages.API}/envs/{quote(str(env_id), safe='')}"


def _read_build(pieces: Iterator[bytes], emit: Any, where: str) -> str:
    """Follow a build's NDJSON answer: output lines, then the image id or the error."""
    pending = b""
    for piece in pieces:
        pending += piece
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if not line.strip():
                continue
            event = json.loads(line)
            if "line" in event:
                emit(str(event["line"]))
            elif "image_id" in event:
                return str(event["image_id"])
            elif "error" in event:
                raise messages.exception_of(500, event, "build")
    raise errors.EngineUnavailableError(
        f"The gateway at {where} ended the build's answer without a result (it may have"
        " restarted); build again."
    )
