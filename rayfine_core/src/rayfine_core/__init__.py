"""Rayfine: run environments in isolated containers and call their methods over HTTP.

>>> import rayfine_core as rf
>>> rf.build_image_from_env("environments/affine", "affine:latest")
>>> with rf.load_env("affine:latest", env_vars={"CHUTES_API_KEY": "..."}) as env:
...     env.evaluate(task_type="sat", num_samples=5)

Layers, each importing only those below it: ``api``/``aio`` (the public
functions) -> ``pool`` (warm pools and replica sets: many environments of
one image) -> ``environment`` (the life of one environment) -> ``transport``
(HTTP to its server), ``runtime`` (the engine interface), ``plugins`` (hooks,
runtimes by name); ``build`` makes images; ``cli`` is the ``rayfine`` command.
"""

from __future__ import annotations

from . import errors
from .aio import (
    acleanup_all_environments,
    aget_environment,
    aload_env,
    aload_envs,
    aload_pool,
    aload_replicas,
)
from .api import (
    attach,
    cleanup_all_environments,
    get_environment,
    list_active_environments,
    load_env,
    load_pool,
    load_replicas,
)
from .build.builder import build_dev_image, build_image_from_env
from .environment.faces import AsyncEnvironment, Environment, HiddenMethodWarning
from .environment.sessions import AsyncSession, Session
from .errors import RayfineError
from .plugins.hookspecs import CallInfo, hookimpl
from .plugins.manager import available_runtimes, get_runtime
from .pool import AsyncPool, AsyncReplicas, Pool, PoolStatus, Progress, Replicas
from .runtime import labels
from .runtime.base import Capabilities, Runtime
from .runtime.types import (
    BuildRequest,
    ContainerHandle,
    ContainerRecord,
    ContainerState,
    Endpoint,
    EnvType,
    Limits,
    Mount,
    RuntimeSpec,
    ServerSpec,
    StartRequest,
    TLSConfig,
)
from .transport.protocol import MethodInfo, Param

__version__ = "0.1.0"

__all__ = [
    "AsyncEnvironment",
    "AsyncPool",
    "AsyncReplicas",
    "AsyncSession",
    "BuildRequest",
    "CallInfo",
    "Capabilities",
    "ContainerHandle",
    "ContainerRecord",
    "ContainerState",
    "Endpoint",
    "EnvType",
    "Environment",
    "HiddenMethodWarning",
    "Limits",
    "MethodInfo",
    "Mount",
    "Param",
    "Pool",
    "PoolStatus",
    "Progress",
    "RayfineError",
    "Replicas",
    "Runtime",
    "RuntimeSpec",
    "ServerSpec",
    "Session",
    "StartRequest",
    "TLSConfig",
    "acleanup_all_environments",
    "aget_environment",
    "aload_env",
    "aload_envs",
    "aload_pool",
    "aload_replicas",
    "attach",
    "available_runtimes",
    "build_dev_image",
    "build_image_from_env",
    "cleanup_all_environments",
    "errors",
    "get_environment",
    "get_runtime",
    "hookimpl",
    "labels",
    "list_active_environments",
    "load_env",
    "load_pool",
    "load_replicas",
]
