"""What a runtime plugin codes against: the :class:`Runtime` interface, its capabilities and types.

from rayfine_core.runtime import Capabilities, Runtime, StartRequest, ContainerHandle
"""

from __future__ import annotations

from .base import Capabilities, Runtime, engine_timeout
from .types import (
    RUN_MOUNT,
    SERVER_USER,
    SOCKET_NAME,
    TOKEN_NAME,
    BuildRequest,
    ContainerHandle,
    ContainerRecord,
    ContainerState,
    Endpoint,
    EnvType,
    Limits,
    RuntimeSpec,
    StartRequest,
    TLSConfig,
)

__all__ = [
    "RUN_MOUNT",
    "SERVER_USER",
    "SOCKET_NAME",
    "TOKEN_NAME",
    "BuildRequest",
    "Capabilities",
    "ContainerHandle",
    "ContainerRecord",
    "ContainerState",
    "Endpoint",
    "EnvType",
    "Limits",
    "Runtime",
    "RuntimeSpec",
    "StartRequest",
    "TLSConfig",
    "engine_timeout",
]
