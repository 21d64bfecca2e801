"""Find the container a command line names: detached environments first, then labels.

A name, env id or container-id prefix is looked up in the state files of
detached environments, then among the Rayfine-owned containers of one
runtime.  A container that exists but is not Rayfine's is refused, never
touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .. import errors
from ..environment.statefiles import Detached, find, list_detached
from ..plugins.manager import get_runtime
from ..runtime import labels
from ..runtime.base import Runtime
from ..runtime.reaper import owned_by
from ..runtime.types import ContainerRecord
from ._util import default_runtime


@dataclass
class Target:
    """A Rayfine container a command acts on."""

    runtime: Runtime
    id: str
    name: str
    detached: Optional[Detached] = None
    env_id: Optional[str] = None


def resolve(name_or_id: str, runtime: Optional[str]) -> Target:
    """The Rayfine container called ``name_or_id`` (UnknownEnvironmentError / NotOwnedError if none)."""
    try:
        record = find(name_or_id, runtime)
    except errors.UnknownEnvironmentError:
        record = None
    if record is not None:
        return Target(
            get_runtime(record.runtime), record.container_id, record.name, record, record.env_id
        )
    rt = get_runtime(runtime or default_runtime())
    matches = _match(rt.list_containers(owned_by(rt.name)), name_or_id)
    if len(matches) > 1:
        names = ", ".join(c.name for c in matches)
        raise errors.ValidationError(
            f"{name_or_id!r} matches several containers ({names}); use a full name."
        )
    if matches:
        return Target(
            rt, matches[0].id, matches[0].name, env_id=matches[0].labels.get(labels.ENV_ID)
        )
    if rt.health(name_or_id).status != "removed":
        raise errors.NotOwnedError(
            f"Container {name_or_id!r} was not started by Rayfine (no {labels.OWNER}={labels.OWNER_VALUE}"
            f" label); Rayfine leaves it alone. Use `{rt.name} stop` for it."
        )
    raise errors.UnknownEnvironmentError(
        f"No Rayfine container {name_or_id!r} on {rt.name}. `rayfine ps` lists them"
        " (add --runtime NAME for another runtime)."
    )


def _match(containers: list[ContainerRecord], name_or_id: str) -> list[ContainerRecord]:
    exact = [c for c in containers if name_or_id in (c.name, c.id, c.labels.get(labels.ENV_ID))]
    if exact:
        return exact
    return [c for c in containers if len(name_or_id) >= 4 and c.id.startswith(name_or_id)]


def detached_targets(runtime: Optional[str]) -> list[Target]:
    """The detached environments recorded in this user's state directory.

    A container labelled detached without a state file here may be another
    user's or another session's (``XDG_STATE_HOME``): ``stop --all`` leaves it,
    ``rayfine stop NAME`` stops it.
    """
    return [
        Target(get_runtime(r.runtime), r.container_id, r.name, r, r.env_id)
        for r in list_detached()
        if runtime is None or r.runtime == runtime
    ]
