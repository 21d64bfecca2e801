"""The plugin manager: built lazily on first use, then cached.

Entry points in the ``rayfine`` group are loaded one by one; a plugin that
fails to import is logged and remembered (``rayfine plugins`` shows why),
never fatal.  Two environment switches control loading:

* ``RAYFINE_DISABLE_PLUGIN_AUTOLOAD=1``: load no entry points at all
  (register plugins yourself with :func:`register`).
* ``RAYFINE_PLUGINS=docker,podman``: load only these entry-point names.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Optional

import pluggy

from . import hookspecs
from .errors import RayfineError, UnknownRuntimeError
from .runtime import Runtime
from .types import RuntimeSpec

log = logging.getLogger("rayfine")

_lock = threading.RLock()
_pm: Optional[pluggy.PluginManager] = None
_load_errors: dict[str, str] = {}
_distributions: dict[str, str] = {}  # plugin name -> "dist version"
_runtimes: dict[str, Runtime] = {}


class PluginConflictError(RayfineError):
    """Two installed plugins declare a runtime of the same name."""


@dataclass(frozen=True)
class RuntimeEntry:
    """A runtime found in the registry, with the plugin that declared it."""

    spec: RuntimeSpec
    plugin: str
    distribution: str


def get_plugin_manager() -> pluggy.PluginManager:
    """Return the process-wide plugin manager, building it on first use."""
    global _pm
    if _pm is None:
        with _lock:
            if _pm is None:
                pm = pluggy.PluginManager("rayfine")
                pm.add_hookspecs(hookspecs)
                if os.environ.get("RAYFINE_DISABLE_PLUGIN_AUTOLOAD", "") in ("", "0"):
                    _load_entry_points(pm)
                _pm = pm
    return _pm


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    allow = {n.strip() for n in os.environ.get("RAYFINE_PLUGINS", "").split(",") if n.strip()}
    for ep in entry_points(group="rayfine"):
        if (allow and ep.name not in allow) or pm.get_plugin(ep.name) is not None:
            continue
        dist = getattr(ep, "dist", None)
        where = f"{dist.name} {dist.version}" if dist is not None else "unknown distribution"
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception as exc:  # a broken third-party plugin must not break Rayfine
            _load_errors[ep.name] = f"{type(exc).__name__}: {exc} (from {where})"
            log.warning("rayfine plugin %r failed to load: %s", ep.name, _load_errors[ep.name])
            continue
        _distributions[ep.name] = where


def register(plugin: Any, name: Optional[str] = None) -> str:
    """Register a plugin object (module or instance with hookimpls); return its name."""
    with _lock:
        registered = get_plugin_manager().register(plugin, name=name)
        _runtimes.clear()
        return registered or ""


def unregister(name: str) -> None:
    """Remove a plugin registered with :func:`register` (runtimes are re-collected)."""
    with _lock:
        get_plugin_manager().unregister(name=name)
        _runtimes.clear()


def load_errors() -> dict[str, str]:
    """Entry-point plugins that failed to load, with the reason."""
    get_plugin_manager()
    return dict(_load_errors)


def runtime_registry() -> dict[str, RuntimeEntry]:
    """Collect every runtime declared by every plugin, keyed by name."""
    pm = get_plugin_manager()
    found: dict[str, RuntimeEntry] = {}
    for impl in pm.hook.rayfine_runtimes.get_hookimpls():
        try:
            produced: Any = impl.function()  # a third party may return anything
            specs = list(produced or ())
        except Exception as exc:
            _load_errors[impl.plugin_name] = (
                f"rayfine_runtimes() raised {type(exc).__name__}: {exc}"
            )
            log.warning("rayfine plugin %r failed: %s", impl.plugin_name, exc)
            continue
        for spec in specs:
            entry = RuntimeEntry(
                spec, impl.plugin_name, _distributions.get(impl.plugin_name, "registered in code")
            )
            if spec.name in found:
                other = found[spec.name]
                raise PluginConflictError(
                    f"Runtime {spec.name!r} is declared twice: by plugin {other.plugin!r} ({other.distribution})"
                    f" and by plugin {entry.plugin!r} ({entry.distribution}). Uninstall one of them."
                )
            found[spec.name] = entry
    return found


def available_runtimes() -> list[str]:
    """Names of every installed runtime."""
    return sorted(runtime_registry())


def get_runtime(name: str) -> Runtime:
    """Return the runtime called ``name``, creating it once per process."""
    with _lock:
        if name in _runtimes:
            return _runtimes[name]
        registry = runtime_registry()
        if name not in registry:
            raise UnknownRuntimeError(name, list(registry), _load_errors)
        runtime = registry[name].spec.factory()
        _runtimes[name] = runtime
        return runtime


def active_runtimes() -> list[Runtime]:
    """Runtimes created so far in this process (used for cleanup)."""
    with _lock:
        return list(_runtimes.values())


def reset() -> None:
    """Forget the plugin manager and runtimes (tests; the next use rebuilds)."""
    global _pm
    with _lock:
        for runtime in _runtimes.values():
            runtime.close()
        _runtimes.clear()
        _load_errors.clear()
        _distributions.clear()
        _pm = None
