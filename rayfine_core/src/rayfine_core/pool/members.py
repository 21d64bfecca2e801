"""The environments a pool holds, what each is doing, and how the pool's starts are failing."""

from __future__ import annotations

import enum
import random
import time
from dataclasses import dataclass, field
from typing import Optional

from .. import errors
from ..environment.life import Life, State

BACKOFF_FIRST, BACKOFF_MAX = 0.5, 60.0
"""Pause after the first round of failed starts, doubling each round up to the last."""
FAIL_AFTER = 3
"""Rounds of failed starts after which waiters get the error instead of waiting on."""
PERMANENT = (
    errors.ImageNotFoundError,
    errors.EnvLoadError,
    errors.ValidationError,
    errors.PluginError,
    errors.MethodNotFoundError,  # a reset= method the environment does not have
    errors.InvalidArgumentsError,
)
"""Start failures that a retry will not cure: waiters get them at once."""


class Phase(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    """Idle in a warm pool; serving calls in a replica set."""
    CHECKING = "checking"
    """Taken by an acquire, which checks it answers before handing it out."""
    IN_USE = "in use"
    RESETTING = "resetting"
    RETIRING = "retiring"
    """To be stopped (released, dead, failed a check) once no call uses it."""
    STOPPING = "stopping"


@dataclass(eq=False)
class Member:
    """One environment of a pool: its life, the face handed out, and the pool's view of it."""

    life: Life
    face: object
    phase: Phase = Phase.STARTING
    busy: int = 0
    """Calls in flight and holds on it (replica sets balance on this)."""
    uses: int = 0
    checked: float = 0.0
    """When it last answered a liveness check (monotonic seconds)."""
    failed_checks: int = 0
    retired_at: float = 0.0
    stop_failures: int = 0
    retry_stop_at: float = 0.0
    resetting: bool = False

    @property
    def env_id(self) -> str:
        return self.life.env_id

    @property
    def stopped_outside(self) -> bool:
        """Its environment was stopped by someone other than the pool."""
        return self.life.state in (State.STOPPING, State.CLOSED)


@dataclass
class Failures:
    """Failed starts: counted, backed off exponentially, the last error kept."""

    total: int = 0
    rounds: int = 0
    """Rounds in a row: failures that happen together (while backing off) count once."""
    last: Optional[BaseException] = None
    retry_at: float = 0.0
    delay: float = 0.0

    def record(self, error: BaseException, now: float) -> None:
        self.total += 1
        self.last = error
        if now >= self.retry_at:  # a new round: back off longer
            self.rounds += 1
            self.delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (self.rounds - 1))
            self.retry_at = now + self.delay * random.uniform(0.8, 1.2)

    def success(self) -> None:
        self.rounds = 0
        self.retry_at = 0.0

    @property
    def failing(self) -> bool:
        """Starts keep failing: waiting for one to succeed is pointless for now."""
        return self.rounds >= FAIL_AFTER or (self.rounds > 0 and isinstance(self.last, PERMANENT))

    def describe(self) -> str:
        if self.last is None:
            return "no start has failed"
        first = (str(self.last).strip().splitlines() or [""])[0]
        return f"{type(self.last).__name__}: {first}"


@dataclass(frozen=True)
class PoolStatus:
    """A pool's state at one moment (``pool.status()``; ``rayfine pool status`` shows the same)."""

    name: str
    kind: str
    image: str
    runtime: str
    target: int
    ready: int
    """Warm pools: idle and ready to hand out.  Replica sets: serving."""
    starting: int
    in_use: int
    """Warm pools: handed out (and being checked for hand-out)."""
    resetting: int
    stopping: int
    busy: int
    """Replica sets: calls in flight and holds."""
    started: int
    """Environments started since the pool was made."""
    failed: int
    """Starts that failed since the pool was made."""
    failing: bool
    last_error: Optional[str]
    retry_in: Optional[float]
    """Seconds until the next start is tried, while backing off after failures."""
    closed: bool
    updated: float = field(default_factory=time.time)

    def __str__(self) -> str:
        text = (
            f"{self.kind} pool {self.name} ({self.image}): {self.ready}/{self.target} ready,"
            f" {self.starting} starting, {self.in_use} in use, {self.failed} failed"
        )
        if self.last_error:
            text += f"; last error: {self.last_error}"
        if self.retry_in is not None:
            text += f"; next try in {self.retry_in:.1f}s"
        return text + ("; closed" if self.closed else "")
