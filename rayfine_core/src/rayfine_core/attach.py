"""Reconnect to environments that outlive the process that started them.

:meth:`Environment.detach() <rayfine_core.environment.BaseEnvironment.detach>`
writes one JSON file per container to ``$XDG_STATE_HOME/rayfine/envs``
(default ``~/.local/state/rayfine/envs``) with how to reach it: endpoint and
token.  The directory is ``0700`` and each
file ``0600``, because the token lets anyone call the environment.

    >>> from rayfine_core import labels
    >>> from rayfine_core.attach import attach
    >>> env = rf.load_env("affine:latest", container_name="affine", labels={labels.DETACHED: "1"})
    >>> env.detach()          # this process may exit now; the container keeps running
    ...
    >>> env = attach("affine")          # any later process of the same user
    >>> env.evaluate(task_type="sat")
    >>> env.cleanup()                   # stops it and forgets the state file
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from . import errors, lifecycle
from .options import EnvOptions
from .plugins import get_runtime
from .types import ContainerHandle, Endpoint, EnvType, StartRequest

if TYPE_CHECKING:
    from .environment import BaseEnvironment, Environment

_FORMAT = 1


@dataclass(frozen=True)
class DetachedRecord:
    """What a state file says about one detached environment."""

    path: Path
    name: str
    container_id: str
    env_id: str
    image: str
    runtime: str
    env_type: EnvType
    endpoint: Endpoint
    token: Optional[str]
    socket_dir: Optional[Path]
    detached_at: float

    def matches(self, name_or_id: str) -> bool:
        """True for the container name, the env id, or a prefix of the container id."""
        return name_or_id in (self.name, self.env_id) or (
            len(name_or_id) >= 4 and self.container_id.startswith(name_or_id)
        )


def state_dir() -> Path:
    """The directory holding one state file per detached environment."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "rayfine" / "envs"


def write_state(env: "BaseEnvironment") -> Path:
    """Save how to reach ``env``; return the state file (written atomically, mode 0600)."""
    launch = env._launch
    handle = env.handle
    data = {
        "format": _FORMAT,
        "name": env.name,
        "container_id": handle.id,
        "env_id": env.id,
        "image": env.image,
        "runtime": env.runtime_name,
        "env_type": env.env_type.value,
        "endpoint": {
            "host": handle.endpoint.host,
            "port": handle.endpoint.port,
            "unix_socket": handle.endpoint.unix_socket,
        },
        "token": launch.token,
        "socket_dir": str(launch.request.socket_dir) if launch.request.socket_dir else None,
        "detached_at": time.time(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }
    directory = _private_dir()
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
        path = directory / f"{env.name}.json"
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _private_dir() -> Path:
    directory = state_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)  # mkdir's mode is filtered by the umask, and the dir may predate us
    return directory


def list_detached() -> list[DetachedRecord]:
    """Every readable state file, oldest first (unreadable ones are skipped)."""
    directory = state_dir()
    if not directory.is_dir():
        return []
    records = []
    for path in sorted(directory.glob("*.json")):
        record = _read(path)
        if record is not None:
            records.append(record)
    return sorted(records, key=lambda r: r.detached_at)


def _read(path: Path) -> Optional[DetachedRecord]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        endpoint = data["endpoint"]
        return DetachedRecord(
            path=path,
            name=data["name"],
            container_id=data["container_id"],
            env_id=data["env_id"],
            image=data["image"],
            runtime=data["runtime"],
            env_type=EnvType(data["env_type"]),
            endpoint=Endpoint(
                host=endpoint.get("host") or "127.0.0.1",
                port=endpoint.get("port"),
                unix_socket=endpoint.get("unix_socket"),
            ),
            token=data.get("token"),
            socket_dir=Path(data["socket_dir"]) if data.get("socket_dir") else None,
            detached_at=float(data.get("detached_at") or 0),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def find_detached(name_or_id: str, runtime: Optional[str] = None) -> DetachedRecord:
    """The detached environment with this container name, env id or container-id prefix."""
    records = [r for r in list_detached() if runtime is None or r.runtime == runtime]
    exact = [r for r in records if name_or_id in (r.name, r.env_id)]
    found = exact or [r for r in records if r.matches(name_or_id)]
    if len(found) == 1:
        return found[0]
    if found:
        names = ", ".join(r.name for r in found)
        raise errors.ValidationError(
            f"{name_or_id!r} matches several detached environments ({names}); use a name."
        )
    known = ", ".join(r.name for r in records) or "none"
    raise errors.UnknownEnvironmentError(
        f"No detached environment {name_or_id!r} (detached: {known}). Start one with `rayfine run IMAGE --name NAME`."
    )


def forget(record: DetachedRecord) -> None:
    """Delete the state file and the socket directory of a detached environment."""
    record.path.unlink(missing_ok=True)
    if record.socket_dir is not None:
        shutil.rmtree(record.socket_dir, ignore_errors=True)


def attach(name_or_id: str, runtime: Optional[str] = None) -> "Environment":
    """Reconnect to a detached environment, by container name, env id, or container-id prefix.

    The environment is not bound to this process: it keeps running when the
    process exits, unless you call ``cleanup()`` (which stops it and deletes
    its state file).

    :param name_or_id: what ``rayfine run`` printed, or the ``container_name``.
    :param runtime: only look at environments of this runtime.
    :raises UnknownEnvironmentError: nothing detached by that name, or its
        container is gone (its stale state file is then deleted).
    :raises ContainerDiedError: the container exists but has stopped.
    """
    from .environment import Environment

    record = find_detached(name_or_id, runtime)
    rt = get_runtime(record.runtime)
    state = rt.health(record.container_id)
    if not state.running:
        if state.status == "removed":
            forget(record)
            raise errors.UnknownEnvironmentError(
                f"The container of detached environment {record.name!r} no longer exists; forgot its state file."
            )
        raise errors.ContainerDiedError(
            f"The container of detached environment {record.name!r} is not running (status {state.status});"
            f" `rayfine logs {record.name}` shows why, `rayfine stop {record.name}` removes it",
            state.exit_code,
            state.oom_killed,
            rt.logs(record.container_id, lifecycle.LOG_TAIL),
        )
    options = EnvOptions(
        image=record.image,
        runtime=record.runtime,
        container_name=record.name,
        env_type=record.env_type,
    )
    request = StartRequest(image=record.image, name=record.name, socket_dir=record.socket_dir)
    launch = lifecycle.Launch(record.env_id, rt, request, record.env_type, record.token)
    launch.handle = ContainerHandle(
        record.container_id, record.name, record.endpoint, record.runtime
    )
    env = Environment(options, launch)
    env._state_file = record.path
    try:
        env._load_methods()
    except errors.TransportError as exc:
        raise errors.TransportError(
            f"Detached environment {record.name!r} runs but does not answer at {record.endpoint} ({exc})."
            f" If its socket directory was deleted, `rayfine stop {record.name}` and run it again."
        ) from exc
    return env
