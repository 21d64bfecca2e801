"""The environments the gateway runs: who owns each, its lease, and the quotas they count against.

Every environment belongs to the client that started it; :meth:`Table.get`
answers only its owner, so another client's environment looks exactly like
one that does not exist.  Everything here runs on the gateway's event loop
(no locks: no awaits between a check and its update).
"""

from __future__ import annotations

import asyncio
import collections
import enum
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

from rayfine_core.errors import StartError
from rayfine_core.runtime.types import ContainerHandle
from rayfine_core.transport.client import AsyncClient

from ..errors import QuotaExceededError
from .tokens import Client


class Phase(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"


@dataclass(eq=False)
class Env:
    """One environment as the gateway tracks it.

    ``name``, ``image`` and ``labels`` are what the client asked for and sees;
    the container itself carries only the gateway's labels.
    """

    id: str
    client: str
    name: str
    image: str
    labels: dict[str, str]
    token: Optional[str] = field(default=None, repr=False)
    created: float = field(default_factory=time.time)
    lease_until: float = 0.0
    phase: Phase = Phase.STARTING
    handle: Optional[ContainerHandle] = None
    run_dir: Optional[Path] = None
    upstream: Optional[AsyncClient] = None
    answered: bool = False
    """True once its server has answered a request: from then on, a refused connection means it died."""
    calls: int = 0
    starting: Optional[asyncio.Future[None]] = field(default=None, repr=False)
    stopping: Optional[asyncio.Future[None]] = field(default=None, repr=False)


class Table:
    """Environments by id, with per-client counts and start times."""

    def __init__(self, lease_timeout: float) -> None:
        self.lease_timeout = lease_timeout
        self._envs: dict[str, Env] = {}
        self._starts: dict[str, collections.deque[float]] = collections.defaultdict(
            collections.deque
        )

    def __len__(self) -> int:
        return len(self._envs)

    def all(self) -> list[Env]:
        return list(self._envs.values())

    def of(self, client: str) -> list[Env]:
        return [env for env in self._envs.values() if env.client == client]

    def get(self, env_id: str, client: str) -> Optional[Env]:
        """The environment ``env_id`` if ``client`` owns it, else None (whether or not it exists)."""
        env = self._envs.get(env_id)
        return env if env is not None and env.client == client else None

    def admit(self, client: Client, name: str, image: str, labels: Mapping[str, str]) -> Env:
        """Record a new environment of ``client``, within its quota.

        :raises QuotaExceededError: it holds ``max_envs`` already, or started
            ``starts_per_minute`` in the last minute.
        """
        mine = self.of(client.name)
        if len(mine) >= client.max_envs:
            raise QuotaExceededError(
                f"Client {client.name!r} holds {len(mine)} environments, its quota"
                f" (max_envs={client.max_envs}); clean some up first."
            )
        now = time.monotonic()
        starts = self._starts[client.name]
        while starts and starts[0] < now - 60:
            starts.popleft()
        if len(starts) >= client.starts_per_minute:
            wait = 60 - (now - starts[0])
            raise QuotaExceededError(
                f"Client {client.name!r} started {len(starts)} environments in the last minute,"
                f" its quota (starts_per_minute={client.starts_per_minute}); retry in {wait:.0f} s."
            )
        if any(env.name == name for env in mine):
            raise StartError(f"An environment named {name!r} exists already.")
        starts.append(now)
        env = Env(
            id=secrets.token_hex(12),
            client=client.name,
            name=name,
            image=image,
            labels=dict(labels),
        )
        self.renew(env)
        self._envs[env.id] = env
        return env

    def renew(self, env: Env) -> None:
        env.lease_until = time.monotonic() + self.lease_timeout

    def expired(self) -> list[Env]:
        """Running environments whose client has not been heard from for a whole lease."""
        now = time.monotonic()
        return [e for e in self._envs.values() if e.phase is Phase.RUNNING and e.lease_until < now]

    def remove(self, env: Env) -> None:
        self._envs.pop(env.id, None)

    def matching(self, client: str, labels: Mapping[str, str]) -> list[Env]:
        """``client``'s environments whose labels include all of ``labels``."""
        return [e for e in self.of(client) if all(e.labels.get(k) == v for k, v in labels.items())]
