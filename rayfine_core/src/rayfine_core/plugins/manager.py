"""The plugin manager: one object that loads plugins, finds runtimes by name, runs hooks, shuts down.

Built lazily on first use and cached.  Entry points in the ``rayfine``
group are loaded one by one; a plugin that fails to import, or implements a
hook that does not exist (a typo), is logged, skipped and remembered
(``rayfine plugins`` shows why), never fatal.  Two environment switches:

* ``RAYFINE_DISABLE_PLUGIN_AUTOLOAD=1``: load no entry points at all
  (register plugins yourself with :func:`register`);
* ``RAYFINE_PLUGINS=docker,podman``: load only these entry-point names.

At interpreter exit the manager first runs the shutdown steps registered
with :meth:`Manager.before_shutdown` (the environment registry stops every
environment there), then closes every runtime it created.
"""

from __future__ import annotations

import atexit
import difflib
import logging
import os
import re
import threading
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Callable, Optional

import pluggy

from ..errors import PluginError, RayfineError, UnknownRuntimeError, UnknownServerError
from ..runtime.base import Runtime
from ..runtime.types import RuntimeSpec, ServerSpec
from . import hookspecs

log = logging.getLogger("rayfine")
GROUP = "rayfine"


class PluginConflictError(RayfineError):
    """Two installed plugins declare a runtime of the same name."""


@dataclass(frozen=True)
class RuntimeEntry:
    """A runtime found in the registry, with the plugin that declared it."""

    spec: RuntimeSpec
    plugin: str
    distribution: str


@dataclass(frozen=True)
class ServerEntry:
    """An in-image server found in the registry, with the plugin that declared it."""

    spec: ServerSpec
    plugin: str
    distribution: str


CallWrapper = Callable[..., Any]
"""A ``rayfine_call`` implementation: called with ``call=``, returns a generator."""


class Manager:
    """Owns the pluggy manager, the plugins' load errors, the runtimes made, and shutdown."""

    def __init__(self, autoload: bool, allow: frozenset[str]) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.load_errors: dict[str, str] = {}
        self._distributions: dict[str, str] = {}
        self._runtimes: dict[str, Runtime] = {}
        self._shutdown_steps: list[Callable[[], None]] = []
        self._lock = threading.RLock()
        if autoload:
            self._load_entry_points(allow)

    # -- loading ------------------------------------------------------------------------
    def _load_entry_points(self, allow: frozenset[str]) -> None:
        for ep, where in _entry_points():
            if (allow and ep.name not in allow) or self.pm.get_plugin(ep.name) is not None:
                continue
            try:
                self.pm.register(ep.load(), name=ep.name)
                self._check(ep.name)
            except Exception as exc:  # a broken third-party plugin must not break Rayfine
                if self.pm.get_plugin(ep.name) is not None:
                    self.pm.unregister(name=ep.name)
                self.load_errors[ep.name] = f"{_describe(exc)} (from {where})"
                log.warning("rayfine plugin %r was skipped: %s", ep.name, self.load_errors[ep.name])
                continue
            self._distributions[ep.name] = where

    def _check(self, name: str) -> None:
        """Refuse a plugin whose hook implementations do not match a spec (a misspelt hook)."""
        plugin = self.pm.get_plugin(name)
        for caller in self.pm.get_hookcallers(plugin) or []:
            if caller.spec is None:
                known = [n for n in dir(hookspecs) if n.startswith("rayfine_")]
                close = difflib.get_close_matches(caller.name, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise PluginError(f"plugin {name!r} implements unknown hook {caller.name!r}{hint}")
        for impl in self.pm.hook.rayfine_call.get_hookimpls():
            if impl.plugin_name == name and not impl.wrapper:
                raise PluginError(
                    f"plugin {name!r}: rayfine_call must be a wrapper: @hookimpl(wrapper=True)"
                    " and a generator that yields once to run the call."
                )
        self.pm.check_pending()

    def register(self, plugin: object, name: Optional[str] = None) -> str:
        """Register a plugin object (module or instance with hookimpls); return its name.

        :raises PluginError: it implements a hook that does not exist.
        """
        with self._lock:
            registered = self.pm.register(plugin, name=name) or ""
            try:
                self._check(registered)
            except Exception:
                self.pm.unregister(name=registered)
                raise
            self._runtimes_changed(registered)
            return registered

    def unregister(self, name: str) -> None:
        with self._lock:
            self._runtimes_changed(name)
            self.pm.unregister(name=name)

    def _runtimes_changed(self, plugin: str) -> None:
        """Forget the runtimes made so far if ``plugin`` declares runtimes (its names may win)."""
        if any(i.plugin_name == plugin for i in self.pm.hook.rayfine_runtimes.get_hookimpls()):
            # A runtime the user already holds keeps working; new lookups see the change.
            self._runtimes = {}

    # -- runtimes -----------------------------------------------------------------------
    def runtime_registry(self) -> dict[str, RuntimeEntry]:
        """Every runtime declared by every plugin, keyed by name."""
        found: dict[str, RuntimeEntry] = {}
        for impl in self.pm.hook.rayfine_runtimes.get_hookimpls():
            try:
                produced: Any = impl.function()  # a third party may return anything
                specs = list(produced or ())
            except Exception as exc:
                self.load_errors[impl.plugin_name] = f"rayfine_runtimes() raised {_describe(exc)}"
                log.warning("rayfine plugin %r failed: %s", impl.plugin_name, exc)
                continue
            for spec in specs:
                where = self._distributions.get(impl.plugin_name, "registered in code")
                entry = RuntimeEntry(spec, impl.plugin_name, where)
                if spec.name in found:
                    other = found[spec.name]
                    raise PluginConflictError(
                        f"Runtime {spec.name!r} is declared twice: by plugin {other.plugin!r}"
                        f" ({other.distribution}) and by plugin {entry.plugin!r}"
                        f" ({entry.distribution}). Uninstall one of them."
                    )
                found[spec.name] = entry
        return found

    def get_runtime(self, name: str) -> Runtime:
        """The runtime called ``name``, created once per process.

        :raises UnknownRuntimeError: no plugin declares it (lists the installed ones).
        """
        with self._lock:
            if name in self._runtimes:
                return self._runtimes[name]
            registry = self.runtime_registry()
            if name not in registry:
                raise UnknownRuntimeError(name, list(registry), self.load_errors)
            runtime = registry[name].spec.factory()
            self._runtimes[name] = runtime
            return runtime

    # -- servers ----------------------------------------------------------------------------
    def server_registry(self) -> dict[str, ServerEntry]:
        """Every in-image server declared by every plugin, keyed by name (first one wins)."""
        found: dict[str, ServerEntry] = {}
        for impl in self.pm.hook.rayfine_servers.get_hookimpls():
            try:
                produced: Any = impl.function()  # a third party may return anything
                specs = list(produced or ())
            except Exception as exc:
                self.load_errors[impl.plugin_name] = f"rayfine_servers() raised {_describe(exc)}"
                continue
            where = self._distributions.get(impl.plugin_name, "registered in code")
            for spec in specs:
                found.setdefault(spec.name, ServerEntry(spec, impl.plugin_name, where))
        return found

    def server(self, name: str) -> ServerSpec:
        """The in-image server called ``name``.

        :raises UnknownServerError: no plugin declares it (lists the installed ones).
        """
        found = self.server_registry()
        if name not in found:
            raise UnknownServerError(name, list(found), self.load_errors)
        return found[name].spec

    # -- hooks ----------------------------------------------------------------------------
    def modify(self, hook: str, **kwargs: Any) -> None:
        """Run a hook whose implementations may change a request; one that raises stops it.

        :raises PluginError: naming the plugin whose implementation raised.
        """
        for impl in reversed(getattr(self.pm.hook, hook).get_hookimpls()):
            try:
                impl.function(*[kwargs[arg] for arg in impl.argnames])
            except Exception as exc:
                raise PluginError(
                    f"plugin {impl.plugin_name!r} refused in {hook}: {_describe(exc)}"
                ) from exc

    def notify(self, hook: str, **kwargs: Any) -> None:
        """Run an observer hook; an implementation that raises is logged and skipped."""
        for impl in reversed(getattr(self.pm.hook, hook).get_hookimpls()):
            try:
                impl.function(*[kwargs[arg] for arg in impl.argnames])
            except Exception as exc:
                log.warning(
                    "rayfine plugin %r failed in %s (ignored): %s",
                    impl.plugin_name,
                    hook,
                    _describe(exc),
                )

    def call_wrappers(self) -> list[CallWrapper]:
        """The ``rayfine_call`` wrappers, outermost first (pluggy's order)."""
        return [impl.function for impl in reversed(self.pm.hook.rayfine_call.get_hookimpls())]

    # -- shutdown and fork ----------------------------------------------------------------
    def before_shutdown(self, step: Callable[[], None]) -> None:
        """Run ``step`` at exit before runtimes are closed (once, however often registered)."""
        with self._lock:
            if step not in self._shutdown_steps:
                self._shutdown_steps.append(step)

    def shutdown(self) -> None:
        """Run the shutdown steps, then close every runtime made (each failure logged)."""
        with self._lock:
            steps, self._shutdown_steps = self._shutdown_steps, []
            runtimes, self._runtimes = list(self._runtimes.values()), {}
        for step in steps:
            try:
                step()
            except Exception as exc:
                log.warning("rayfine: shutdown step failed: %s", _describe(exc))
        for runtime in runtimes:
            try:
                runtime.close()
            except Exception as exc:
                log.warning("rayfine: closing runtime %s failed: %s", runtime.name, _describe(exc))

    def forget_after_fork(self) -> None:
        """In a forked child: drop (never close) the parent's runtimes and shutdown steps."""
        self._lock = threading.RLock()  # a parent thread may have held it at fork time
        self._runtimes = {}
        self._shutdown_steps = []


def _entry_points() -> list[tuple[metadata.EntryPoint, str]]:
    """Each entry point of the group with "distribution version" (Python 3.9 has no ep.dist).

    A distribution seen twice on sys.path counts once: the first one wins, as imports do.
    """
    found: list[tuple[metadata.EntryPoint, str]] = []
    seen: set[str] = set()
    for dist in metadata.distributions():
        name = dist.metadata["Name"] or "unknown distribution"
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        seen.add(key)
        for ep in dist.entry_points:
            if ep.group == GROUP:
                found.append((ep, f"{name} {dist.version}"))
    return found


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


_manager: Optional[Manager] = None
_manager_lock = threading.Lock()


def get_manager() -> Manager:
    """The process-wide :class:`Manager`, built on first use."""
    global _manager
    manager = _manager
    if manager is None:
        with _manager_lock:
            if _manager is None:
                autoload = os.environ.get("RAYFINE_DISABLE_PLUGIN_AUTOLOAD", "") in ("", "0")
                raw = os.environ.get("RAYFINE_PLUGINS", "")
                allow = frozenset(n.strip() for n in raw.split(",") if n.strip())
                _manager = Manager(autoload, allow)
                atexit.register(_shutdown)
            manager = _manager
    return manager


_interpreter_exiting = False


def interpreter_exiting() -> bool:
    """True once the interpreter's exit has begun (the shutdown at exit is running)."""
    return _interpreter_exiting


def _shutdown() -> None:
    global _interpreter_exiting
    _interpreter_exiting = True
    if _manager is not None:
        _manager.shutdown()


def _after_fork_in_child() -> None:
    global _manager_lock
    _manager_lock = threading.Lock()
    if _manager is not None:
        _manager.forget_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def get_runtime(name: str) -> Runtime:
    """The runtime called ``name`` (see :meth:`Manager.get_runtime`)."""
    return get_manager().get_runtime(name)


def available_runtimes() -> list[str]:
    """Names of every installed runtime."""
    return sorted(get_manager().runtime_registry())


def register(plugin: object, name: Optional[str] = None) -> str:
    """Register a plugin object in code (tests, notebooks); return its name."""
    return get_manager().register(plugin, name)


def unregister(name: str) -> None:
    """Remove a plugin registered with :func:`register`."""
    get_manager().unregister(name)


def reset() -> None:
    """Shut the manager down and forget it (tests; the next use builds a new one)."""
    global _manager
    with _manager_lock:
        manager, _manager = _manager, None
    if manager is not None:
        manager.shutdown()
