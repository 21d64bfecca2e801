"""Plugins: the hook specifications and the manager that loads plugins and finds runtimes."""

from __future__ import annotations

from .hookspecs import CallInfo, hookimpl
from .manager import (
    Manager,
    PluginConflictError,
    RuntimeEntry,
    ServerEntry,
    available_runtimes,
    get_manager,
    get_runtime,
    register,
    reset,
    unregister,
)

__all__ = [
    "CallInfo",
    "Manager",
    "PluginConflictError",
    "RuntimeEntry",
    "ServerEntry",
    "available_runtimes",
    "get_manager",
    "get_runtime",
    "hookimpl",
    "register",
    "reset",
    "unregister",
]
