"""What a client may ask of the gateway: images, options, limits, and the size of a request.

Every check raises :class:`~rayfine_remote.errors.PolicyError` saying what
was refused and what the token allows, so a user knows what to ask their
admin for.  Nothing here quotes an environment variable's value.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from typing import Optional

from rayfine_core.errors import ValidationError
from rayfine_core.runtime.base import Capabilities
from rayfine_core.runtime.types import Limits, StartRequest

from ..errors import PolicyError
from .tokens import Client

MAX_LABELS = 64
MAX_LABEL_BYTES = 4096
MAX_ENV_VARS = 512
MAX_ENV_BYTES = 1 << 20
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}")
_MEMORY = re.compile(r"(\d+(?:\.\d+)?)([bkmg]?)", re.I)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_RESERVED_ENV = (
    "RAYFINE_TOKEN",
    "RAYFINE_TOKEN_FILE",
    "RAYFINE_UDS",
    "RAYFINE_HOST",
    "RAYFINE_PORT",
    "RAYFINE_INSECURE_NO_TOKEN",
)
"""Set by the gateway alone (how the server listens and authenticates)."""


def normalise(image: str) -> str:
    """``name`` -> ``name:latest``; references with a tag or digest, and ids, unchanged."""
    last = image.rsplit("/", 1)[-1]
    if "@" in image or ":" in last or re.fullmatch(r"(sha256:)?[0-9a-f]{12,64}", image):
        return image
    return image + ":latest"


def check_image(client: Client, image: str) -> None:
    reference = normalise(image)
    if not any(fnmatch.fnmatchcase(reference, _pattern(p)) for p in client.images):
        allowed = ", ".join(client.images) or "none"
        raise PolicyError(
            f"Image {image!r} is not on this gateway's allow-list for client {client.name!r}"
            f" (allowed: {allowed}); ask the gateway's admin to allow it."
        )


def _pattern(pattern: str) -> str:
    """A pattern without wildcards names one image (``affine`` is ``affine:latest``)."""
    return pattern if any(c in pattern for c in "*?[") else normalise(pattern)


def check_build(client: Client, tag: str) -> None:
    if not client.build:
        raise PolicyError(
            f"Client {client.name!r} may not build images on this gateway; build where it"
            " runs, or ask the gateway's admin for 'build': true."
        )
    check_image(client, tag)


def check_start(client: Client, request: StartRequest, capabilities: Capabilities) -> StartRequest:
    """The request as the gateway will run it: checked, limits capped, reserved variables dropped.

    :raises PolicyError: the token may not do what is asked.
    :raises ValidationError: the request is malformed or too large.
    """
    check_image(client, request.image)
    _check_sizes(request)
    if not _NAME.fullmatch(request.name):
        raise ValidationError(f"Invalid container name {request.name!r}.")
    refused = sorted(set(request.cap_add) - set(client.cap_add))
    if refused:
        raise PolicyError(
            f"Client {client.name!r} may not keep capabilities {refused}"
            f" (allowed: {list(client.cap_add) or 'none'})."
        )
    if request.network not in client.networks:
        raise PolicyError(
            f"Client {client.name!r} may not use network {request.network!r}"
            f" (allowed: {[n if n is not None else 'default' for n in client.networks]})."
        )
    if _is_root(request.user) and not client.root:
        raise PolicyError(f"Client {client.name!r} may not run environments as root.")
    if client.isolation and request.isolation not in client.isolation:
        raise PolicyError(
            f"Client {client.name!r} must use isolation {list(client.isolation)},"
            f" not {request.isolation!r}."
        )
    if request.isolation not in capabilities.isolation:
        raise ValidationError(
            f"This gateway's runtime offers isolation {sorted(capabilities.isolation)},"
            f" not {request.isolation!r}."
        )
    if request.command is not None:
        raise PolicyError("A remote environment runs its image's own command (command=None).")
    refused = sorted(set(request.options) - set(client.options))
    if refused:
        raise PolicyError(
            f"Client {client.name!r} may not pass runtime options {refused}"
            f" (allowed: {list(client.options) or 'none'})."
        )
    env = {k: v for k, v in request.env.items() if k not in _RESERVED_ENV}
    return dataclasses.replace(request, env=env, limits=_capped(client, request.limits))


def _check_sizes(request: StartRequest) -> None:
    if len(request.labels) > MAX_LABELS or any(
        len(k) + len(v) > MAX_LABEL_BYTES for k, v in request.labels.items()
    ):
        raise ValidationError(
            f"At most {MAX_LABELS} labels of {MAX_LABEL_BYTES} bytes each per environment."
        )
    size = sum(len(k) + len(v) for k, v in request.env.items())
    if len(request.env) > MAX_ENV_VARS or size > MAX_ENV_BYTES:
        raise ValidationError(
            f"At most {MAX_ENV_VARS} environment variables and {MAX_ENV_BYTES} bytes of them."
        )


def _is_root(user: Optional[str]) -> bool:
    return user is not None and (user == "root" or user.split(":", 1)[0] == "0")


def _capped(client: Client, limits: Limits) -> Limits:
    """The client's limits, each no larger than the token's cap; a cap applies when none is asked."""
    mem = limits.mem_limit
    if client.max_memory is not None:
        cap = memory_bytes(client.max_memory)
        if mem is None:
            mem = client.max_memory
        elif memory_bytes(mem) > cap:
            raise PolicyError(
                f"mem_limit {mem!r} is above this client's cap {client.max_memory!r}."
            )
    cpus = limits.cpu_limit
    if client.max_cpus is not None:
        if cpus is None:
            cpus = float(client.max_cpus)
        elif cpus > client.max_cpus:
            raise PolicyError(f"cpu_limit {cpus} is above this client's cap {client.max_cpus}.")
    pids = limits.pids_limit
    if client.max_pids is not None:
        if pids is None:
            pids = client.max_pids
        elif pids > client.max_pids:
            raise PolicyError(f"pids_limit {pids} is above this client's cap {client.max_pids}.")
    return Limits(mem_limit=mem, cpu_limit=cpus, pids_limit=pids)


def memory_bytes(text: str) -> int:
    """``"512m"`` -> bytes.

    :raises ValidationError: not a size.
    """
    match = _MEMORY.fullmatch(str(text).strip())
    if not match:
        raise ValidationError(f"{text!r} is not a memory size such as '512m' or '2g'.")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])
