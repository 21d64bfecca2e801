"""What a pool or replica set was asked for: checked once, before any container starts."""

from __future__ import annotations

import dataclasses
import re
import secrets
from dataclasses import dataclass
from typing import Optional

from ..environment.options import EnvOptions
from ..errors import ValidationError

POOL_LABEL = "rayfine.pool"
"""Container label: the name of the pool or replica set the container belongs to."""
KIND_LABEL = "rayfine.pool.kind"
"""Container label: ``warm`` (a warm pool) or ``replicas`` (a replica set)."""
WARM, REPLICAS = "warm", "replicas"
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}")


@dataclass(frozen=True)
class FleetSettings:
    """How many environments to keep, and how to keep them.

    ``target`` is the number of *idle ready* environments for a warm pool
    (acquired ones are replaced at once) and the number of replicas for a
    replica set.
    """

    kind: str
    name: str
    target: int
    max_starting: Optional[int] = None
    """Starts this pool runs at once (None: ``RAYFINE_HOST_MAX_STARTS``)."""
    max_envs: Optional[int] = None
    """Warm pools: most environments held at once, ready + starting + in use (None: no cap)."""
    health_interval: float = 10.0
    """Seconds between liveness checks of an idle environment (0: none in the background)."""
    reset: Optional[str] = None
    """Warm pools: a method called before every hand-out, on fresh environments too; released
    environments are reused if it succeeds."""
    reset_timeout: float = 60.0
    max_uses: Optional[int] = None
    """Warm pools with ``reset``: hand an environment out at most this many times."""

    def __post_init__(self) -> None:
        what = "size" if self.kind == WARM else "replicas"
        if not _whole(self.target) or self.target < 1:
            raise ValidationError(f"{what} must be a whole number >= 1, got {self.target!r}.")
        if not _NAME.fullmatch(str(self.name)) or not isinstance(self.name, str):
            raise ValidationError(
                f"Invalid pool name {self.name!r}: up to 63 letters, digits, '_', '.', '-'"
                " (starting with a letter or digit)."
            )
        for field, value in (("max_starting", self.max_starting), ("max_uses", self.max_uses)):
            if value is not None and (not _whole(value) or value < 1):
                raise ValidationError(f"{field} must be a whole number >= 1, got {value!r}.")
        if self.max_envs is not None and (not _whole(self.max_envs) or self.max_envs < self.target):
            raise ValidationError(
                f"max_envs must be a whole number >= size ({self.target}), got {self.max_envs!r}."
            )
        for field, number in (
            ("health_interval", self.health_interval),
            ("reset_timeout", self.reset_timeout),
        ):
            if not isinstance(number, (int, float)) or isinstance(number, bool) or number < 0:
                raise ValidationError(f"{field} must be a number of seconds >= 0, got {number!r}.")
        if self.reset is not None and (
            not isinstance(self.reset, str) or not self.reset.isidentifier() or self.reset[0] == "_"
        ):
            raise ValidationError(
                f"reset must name a public method of the environment (such as 'reset'),"
                f" got {self.reset!r}."
            )
        if self.max_uses is not None and self.reset is None:
            raise ValidationError("max_uses applies to reused environments: pass reset= too.")


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def default_name(image: str) -> str:
    """``<image name>-<6 hex>``: readable in ``rayfine pool status``, unique in practice."""
    base = image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
    base = re.sub(r"[^a-zA-Z0-9_.-]", "-", base).strip(".-_")[:40] or "pool"
    return f"{base}-{secrets.token_hex(3)}"


def member_options(options: EnvOptions, settings: FleetSettings) -> EnvOptions:
    """The settings every environment of the pool starts with: the caller's, plus pool labels.

    Members never restart themselves: the pool replaces a dead one, so calls
    go to the others meanwhile instead of waiting for it.
    """
    if options.container_name is not None:
        raise ValidationError(
            "container_name names one container; a pool names its own (pass name= to name the"
            " pool)."
        )
    labels = {**options.labels, POOL_LABEL: settings.name, KIND_LABEL: settings.kind}
    return dataclasses.replace(options, labels=labels, restart=False)
