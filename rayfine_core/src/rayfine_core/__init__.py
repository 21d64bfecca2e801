"""Rayfine: run environments in isolated containers and call their methods over HTTP.

>>> import rayfine_core as rf
>>> rf.build_image_from_env("environments/affine", "affine:latest")
>>> with rf.load_env("affine:latest", env_vars={"CHUTES_API_KEY": "..."}) as env:
...     env.evaluate(task_type="sat", num_samples=5)
"""

from __future__ import annotations

from . import errors
from .api import cleanup_all_environments, get_environment, list_active_environments, load_env
from .async_api import acleanup_all_environments, aget_environment, aload_env, aload_envs
from .async_environment import AsyncEnvironment
from .build import build_image_from_env
from .environment import Environment
from .errors import RayfineError
from .hookspecs import hookimpl
from .plugins import available_runtimes, get_runtime
from .protocol import MethodInfo, Param
from .runtime import Runtime
from .types import (
    BuildRequest,
    ContainerHandle,
    ContainerRecord,
    ContainerState,
    Endpoint,
    EnvType,
    Limits,
    RuntimeSpec,
    StartRequest,
)

__version__ = "0.1.0"

__all__ = [
    "AsyncEnvironment",
    "BuildRequest",
    "ContainerHandle",
    "ContainerRecord",
    "ContainerState",
    "Endpoint",
    "EnvType",
    "Environment",
    "Limits",
    "MethodInfo",
    "Param",
    "RayfineError",
    "Runtime",
    "RuntimeSpec",
    "StartRequest",
    "acleanup_all_environments",
    "aget_environment",
    "aload_env",
    "aload_envs",
    "available_runtimes",
    "build_image_from_env",
    "cleanup_all_environments",
    "errors",
    "get_environment",
    "get_runtime",
    "hookimpl",
    "list_active_environments",
    "load_env",
]
