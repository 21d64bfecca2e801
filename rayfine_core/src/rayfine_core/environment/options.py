"""Validated settings of one ``load_env`` call: checked once, up front, before any engine work."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from ..egress.isolation import check_isolation, validate_gvisor_options
from ..egress.policy import EgressPolicy
from ..errors import ValidationError
from ..runtime.types import SERVER_USER, EnvType, Limits, Mount, check_reference

MODES = ("local", "remote")
REMOTE_URL = "RAYFINE_REMOTE_URL"
REMOTE_TOKEN = "RAYFINE_REMOTE_TOKEN"
DEFAULT_MEM_LIMIT = "4g"
DEFAULT_PIDS_LIMIT = 1024
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CONTAINER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}")
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}|\d+(:\d+)?")
_MEMORY = re.compile(r"\d+(\.\d+)?[bkmgBKMG]?")
_RESERVED_ENV = (
    "RAYFINE_MAX_SESSIONS",
    "RAYFINE_SESSION_IDLE_TIMEOUT",
    "RAYFINE_TOKEN",
    "RAYFINE_TOKEN_FILE",
    "RAYFINE_UDS",
    "RAYFINE_HOST",
    "RAYFINE_PORT",
    "RAYFINE_INSECURE_NO_TOKEN",
)
DEV_MOUNT = "/app"
"""Where dev mode mounts the environment directory (the server's ``RAYFINE_ENV_DIR``)."""


@dataclass
class EnvOptions:
    """Everything ``load_env`` was asked for.

    Every field is checked in ``__post_init__``; a bad one raises
    :class:`~rayfine_core.errors.ValidationError` saying what to pass instead,
    never quoting an environment variable's value.
    """

    image: str
    runtime: str = "docker"
    mode: str = "local"
    container_name: Optional[str] = None
    http_port: Optional[int] = None
    env_vars: dict[str, str] = field(default_factory=dict, repr=False)
    env_type: Optional[EnvType] = None
    start_timeout: float = 60.0
    limits: Limits = field(default_factory=Limits)
    network: Optional[str] = None
    cap_add: tuple[str, ...] = ()
    transport: str = "auto"
    restart: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    user: Optional[str] = SERVER_USER
    isolation: str = "container"
    egress: Optional[EgressPolicy] = None
    max_sessions: Optional[int] = None
    session_idle_timeout: Optional[float] = None
    runtime_options: dict[str, Any] = field(default_factory=dict)
    url: Optional[str] = None
    """mode="remote": the gateway (default ``RAYFINE_REMOTE_URL``)."""
    token: Optional[str] = field(default=None, repr=False)
    """mode="remote": this client's token (default ``RAYFINE_REMOTE_TOKEN``)."""
    eager: bool = False
    """Construct the Actor at start (``RAYFINE_EAGER=1``): a broken Actor fails the start."""
    dev: Optional[Union[str, os.PathLike[str]]] = None
    """Dev mode: this host directory is mounted read-only over ``/app`` and reloaded on change."""

    def __post_init__(self) -> None:
        check_reference(self.image)
        if self.mode not in MODES:
            raise ValidationError(f"Unknown mode {self.mode!r}. Choose one of: {', '.join(MODES)}.")
        _check_remote(self)
        if self.container_name is not None and not _matches(_CONTAINER_NAME, self.container_name):
            raise ValidationError(
                f"Invalid container_name {self.container_name!r}: use letters, digits, '_', '.',"
                " '-' (starting with a letter or digit)."
            )
        if self.http_port is not None and not (
            isinstance(self.http_port, int) and 0 < self.http_port < 65536
        ):
            raise ValidationError(f"http_port must be an int in 1..65535, got {self.http_port!r}.")
        self.env_vars = check_env_vars(self.env_vars)
        if self.env_type is not None:
            self.env_type = _env_type(self.env_type)
        if not (isinstance(self.start_timeout, (int, float)) and self.start_timeout > 0):
            raise ValidationError(
                f"start_timeout must be a positive number of seconds, got {self.start_timeout!r}."
            )
        if self.transport not in ("auto", "unix", "tcp"):
            raise ValidationError(
                f"transport must be 'auto', 'unix' or 'tcp', got {self.transport!r}."
            )
        if self.user is not None and not _matches(_USER, str(self.user)):
            raise ValidationError(
                f"user must be a user name or uid[:gid] such as {SERVER_USER!r} or 'root',"
                f" got {self.user!r}."
            )
        _check_limits(self.limits)
        self.labels = _check_labels(self.labels)
        check_isolation(self.isolation)
        if self.max_sessions is not None and not (
            isinstance(self.max_sessions, int) and self.max_sessions >= 0
        ):
            raise ValidationError(
                f"max_sessions must be a whole number >= 0, got {self.max_sessions!r}."
            )
        if self.session_idle_timeout is not None and not (
            isinstance(self.session_idle_timeout, (int, float)) and self.session_idle_timeout > 0
        ):
            raise ValidationError(
                "session_idle_timeout must be a positive number of seconds,"
                f" got {self.session_idle_timeout!r}."
            )
        if self.isolation == "gvisor":
            if self.limits.pids_limit == DEFAULT_PIDS_LIMIT:
                self.limits.pids_limit = None  # bounds gVisor's own threads, not the env's
            validate_gvisor_options(self.network, self.http_port, self.limits.pids_limit)
            if self.transport == "tcp":
                raise ValidationError(
                    "isolation='gvisor' has no network device to publish a port on; use the"
                    " default Unix-socket transport."
                )
        if self.egress is not None:
            self.egress = EgressPolicy.coerce(self.egress)
            if self.network not in (None, "none"):
                raise ValidationError(
                    f"egress=[...] replaces the network: the container gets none, and the"
                    f" allow-list is its only way out. Drop network={self.network!r}."
                )
            if self.transport == "tcp" or self.http_port is not None:
                raise ValidationError(
                    "egress=[...] needs the Unix-socket transport (the container has no network"
                    " device to publish a port on); drop transport='tcp' / http_port."
                )
        if not isinstance(self.eager, bool):
            raise ValidationError(f"eager must be True or False, got {self.eager!r}.")
        if self.dev is not None:
            self.dev = check_dev_dir(self.dev)

    def mounts(self) -> tuple[Mount, ...]:
        """Host directories the container gets: the env directory in dev mode."""
        return () if self.dev is None else (Mount(Path(self.dev), DEV_MOUNT, read_only=True),)

    def check_dev(self, env_type: EnvType, runtime: str, mounts: bool) -> None:
        """Refuse dev mode where it cannot work: http-based images, runtimes without mounts."""
        if self.dev is None:
            return
        if env_type is not EnvType.FUNCTION_BASED:
            raise ValidationError(
                "dev= runs function-based environments (Rayfine's server reloads env.py); an"
                " http-based app serves itself: rebuild it, or run it with its own reloader."
            )
        if not mounts:
            raise ValidationError(
                f"Runtime {runtime!r} cannot mount host directories (Capabilities.mounts), which"
                " dev= needs; use docker, podman or process."
            )

    def server_env(self) -> dict[str, str]:
        """Variables for the injected server that these options ask for (PROTOCOL.md)."""
        env = {"RAYFINE_EAGER": "1"} if self.eager else {}
        if self.dev is not None:
            env["RAYFINE_RELOAD"] = "1"
            # No __pycache__ written into the user's directory: a .pyc records its source's
            # mtime in whole seconds, so a same-size edit within a second would load stale code.
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        return env


def check_dev_dir(path: Union[str, os.PathLike[str]]) -> Path:
    """An environment directory for dev mode: absolute, existing, with an env.py."""
    try:
        resolved = Path(path).expanduser().resolve()
    except (TypeError, OSError) as exc:
        raise ValidationError(
            f"dev= must be an environment directory, got {path!r}: {exc}"
        ) from None
    if not (resolved / "env.py").is_file():
        raise ValidationError(
            f"dev={str(path)!r} is not an environment directory (no env.py in {resolved})."
        )
    return resolved


def _check_remote(options: EnvOptions) -> None:
    """Remote mode needs a gateway URL and a token (arguments or environment); local mode neither."""
    if options.mode != "remote":
        if options.url is not None or options.token is not None:
            raise ValidationError("url= and token= name a gateway: pass them with mode='remote'.")
        return
    options.url = options.url or os.environ.get(REMOTE_URL) or None
    options.token = options.token or os.environ.get(REMOTE_TOKEN) or None
    if not options.url or not options.token:
        raise ValidationError(
            f"mode='remote' needs the gateway's url= and your token= (or {REMOTE_URL} and"
            f" {REMOTE_TOKEN}); `rayfine serve` prints the URL, its admin gives you the token."
        )


def _matches(pattern: re.Pattern[str], text: str) -> bool:
    return isinstance(text, str) and pattern.fullmatch(text) is not None  # no trailing "\n"


def check_env_vars(env_vars: Optional[Mapping[str, Any]]) -> dict[str, str]:
    """Check names and stringify values; never echo a value (it may be a secret)."""
    if env_vars is None:
        return {}
    if not isinstance(env_vars, Mapping):
        raise ValidationError("env_vars must be a mapping of NAME -> value.")
    out: dict[str, str] = {}
    for key, value in env_vars.items():
        if not isinstance(key, str) or not _matches(_ENV_NAME, key):
            raise ValidationError(
                f"Invalid environment variable name {key!r}: use letters, digits and '_'."
            )
        if key in _RESERVED_ENV:
            raise ValidationError(f"Environment variable {key} is reserved by Rayfine; rename it.")
        if value is None or isinstance(value, (dict, list, tuple, set, bytes)):
            raise ValidationError(
                f"Environment variable {key} must be a string or number (value not shown)."
            )
        text = str(value)
        if "\x00" in text:
            raise ValidationError(
                f"Environment variable {key} contains a NUL byte, which no process environment"
                " can hold (value not shown)."
            )
        out[key] = text
    return out


def _check_labels(labels: Optional[Mapping[str, str]]) -> dict[str, str]:
    out = dict(labels or {})
    for key, value in out.items():
        if not isinstance(key, str) or not isinstance(value, str) or not key:
            raise ValidationError(f"labels must map non-empty strings to strings, got {key!r}.")
    return out


def _env_type(value: Any) -> EnvType:
    try:
        return EnvType(value)
    except ValueError:
        choices = ", ".join(repr(t.value) for t in EnvType)
        raise ValidationError(f"Unknown env_type {value!r}. Choose one of: {choices}.") from None


def _check_limits(limits: Limits) -> None:
    if limits.mem_limit is not None and not _matches(_MEMORY, str(limits.mem_limit)):
        raise ValidationError(
            f"mem_limit must look like '512m' or '2g' (None: no limit), got {limits.mem_limit!r}."
        )
    if limits.cpu_limit is not None and not (
        isinstance(limits.cpu_limit, (int, float)) and limits.cpu_limit > 0
    ):
        raise ValidationError(
            f"cpu_limit must be a positive number of CPUs, got {limits.cpu_limit!r}."
        )
    if limits.pids_limit is not None and not (
        isinstance(limits.pids_limit, int) and limits.pids_limit > 0
    ):
        raise ValidationError(
            f"pids_limit must be a positive int (None: no limit), got {limits.pids_limit!r}."
        )
