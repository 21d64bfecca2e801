"""State files of detached environments: how a later process reaches a container.

``env.detach()`` (and ``rayfine run``) write one JSON file per container to
``$XDG_STATE_HOME/rayfine/envs`` (default ``~/.local/state/rayfine/envs``)
with its endpoint and token; ``rayfine_core.attach(name)`` and the CLI read
them.  The directory is ``0700`` and each file ``0600``, because the token
lets anyone call the environment.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .. import errors
from ..runtime import labels
from ..runtime.types import ContainerRecord, Endpoint, EnvType
from . import rundir

_FORMAT = 1


@dataclass(frozen=True)
class Detached:
    """What a state file says about one detached environment."""

    path: Optional[Path]
    name: str
    container_id: str
    env_id: str
    image: str
    runtime: str
    env_type: EnvType
    endpoint: Endpoint
    token: Optional[str] = field(repr=False)
    run_dir: Optional[Path]
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


def write(record: Detached) -> Path:
    """Save ``record``; return its file (written atomically, mode 0600)."""
    endpoint = record.endpoint
    data = {
        "format": _FORMAT,
        "name": record.name,
        "container_id": record.container_id,
        "env_id": record.env_id,
        "image": record.image,
        "runtime": record.runtime,
        "env_type": record.env_type.value,
        "endpoint": {
            "host": endpoint.host,
            "port": endpoint.port,
            "unix_socket": endpoint.unix_socket,
        },
        "token": record.token,
        "run_dir": str(record.run_dir) if record.run_dir else None,
        "detached_at": record.detached_at or time.time(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }
    directory = _private_dir()
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
        path = directory / f"{record.name}.json"
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


def list_detached() -> list[Detached]:
    """Every readable state file, oldest first (unreadable ones are skipped)."""
    directory = state_dir()
    if not directory.is_dir():
        return []
    records = [r for r in map(_read, sorted(directory.glob("*.json"))) if r is not None]
    return sorted(records, key=lambda r: r.detached_at)


def _read(path: Path) -> Optional[Detached]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        endpoint = data["endpoint"]
        run_dir = data.get("run_dir") or data.get("socket_dir")  # format 1 before run dirs
        return Detached(
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
            run_dir=Path(run_dir) if run_dir else None,
            detached_at=float(data.get("detached_at") or 0),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def find(name_or_id: str, runtime: Optional[str] = None) -> Detached:
    """The detached environment with this container name, env id or container-id prefix.

    :raises UnknownEnvironmentError: none matches (the message lists the detached ones).
    :raises ValidationError: several match.
    """
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
        f"No detached environment {name_or_id!r} (detached: {known})."
        " Start one with `rayfine run IMAGE --name NAME`."
    )


def is_detached(record: ContainerRecord) -> bool:
    """True if this user's state files record the container (``detach()`` without the label)."""
    env_id = record.labels.get(labels.ENV_ID)
    return any(r.env_id == env_id or r.container_id == record.id for r in list_detached())


def forget(record: Detached) -> None:
    """Delete the state file and the run directory of a detached environment."""
    if record.path is not None:
        record.path.unlink(missing_ok=True)
    if record.run_dir is not None:
        rundir.remove(record.run_dir)
