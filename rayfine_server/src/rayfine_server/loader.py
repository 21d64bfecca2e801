"""Import the user's env.py, keeping any failure to show the client later.

A broken env.py must not stop the server: if it did, the client would only
see a container that never becomes healthy.  Instead the failure, with its
traceback, is kept and served by ``/health`` so the client fails fast.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Dict, Optional

from .errors import ENV_LOAD_FAILED, CallError, format_user_traceback, qualified_type_name
from .methods import Method, constructor, discover_methods

MODULE_NAME = "env"
ACTOR_CLASS_NAME = "Actor"

logger = logging.getLogger(__name__)


@dataclass
class LoadedEnv:
    """The outcome of importing env.py: its methods, or why it failed.

    :param env_file: the env.py that was (or would have been) imported.
    :param module: the imported module; ``None`` when loading failed.
    :param actor_class: the module's ``Actor`` class, if it defines one.
    :param methods: callable methods by name; empty when loading failed.
    :param constructor: ``Actor(...)`` as a method, for checking session arguments.
    :param max_sessions: ``Actor.max_sessions`` (1 when not declared; 0 without an Actor).
    :param error: the ``env_load_failed`` error when loading failed.
    """

    env_file: Path
    module: Optional[ModuleType] = None
    actor_class: Optional[type] = None
    methods: Dict[str, Method] = field(default_factory=dict)
    constructor: Optional[Method] = None
    max_sessions: int = 0
    error: Optional[CallError] = None


def load_env(env_dir: Path) -> LoadedEnv:
    """Import ``env_dir/env.py`` as module ``env`` and collect its methods.

    ``env_dir`` goes first on ``sys.path`` so env.py can import its siblings.
    Never raises for problems in the user's code; they land in ``error``.
    """
    env_dir = env_dir.resolve()
    env_file = env_dir / "env.py"
    if not env_file.is_file():
        return _failed(env_file, FileNotFoundError(f"No env.py in {env_dir}"), with_traceback=False)
    if sys.path[:1] != [str(env_dir)]:
        sys.path.insert(0, str(env_dir))
    try:
        module = _import_file(env_file)
    except BaseException as exc:
        return _failed(env_file, exc)
    actor_class = getattr(module, ACTOR_CLASS_NAME, None)
    if actor_class is not None and not isinstance(actor_class, type):
        problem = TypeError(
            f"env.{ACTOR_CLASS_NAME} must be a class, got {type(actor_class).__name__}"
        )
        return _failed(env_file, problem, with_traceback=False)
    try:
        methods = discover_methods(module, actor_class)
        init = constructor(actor_class) if actor_class is not None else None
    except Exception as exc:
        return _failed(env_file, exc)
    max_sessions = 0
    if actor_class is not None:
        max_sessions = getattr(actor_class, "max_sessions", 1)
        if isinstance(max_sessions, bool) or not isinstance(max_sessions, int) or max_sessions < 1:
            wrong = ValueError(
                f"Actor.max_sessions must be a positive integer, got {max_sessions!r}"
            )
            return _failed(env_file, wrong, with_traceback=False)
    logger.info("Loaded %s: %d methods", env_file, len(methods))
    return LoadedEnv(env_file, module, actor_class, methods, init, max_sessions)


def _import_file(env_file: Path) -> ModuleType:
    """Execute ``env_file`` as a fresh module registered as ``sys.modules['env']``."""
    spec = importlib.util.spec_from_file_location(MODULE_NAME, env_file)
    if spec is None or spec.loader is None:
        raise ImportError(f"Cannot import {env_file}")
    module = importlib.util.module_from_spec(spec)
    # Registered before executing so dataclasses, pickle and typing can look
    # the module up by name while it runs, as with a normal import.
    sys.modules[MODULE_NAME] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(MODULE_NAME, None)
        raise
    return module


def _failed(env_file: Path, exc: BaseException, *, with_traceback: bool = True) -> LoadedEnv:
    """A ``LoadedEnv`` reporting ``exc`` as ``env_load_failed``."""
    type_name = qualified_type_name(exc)
    error = CallError(
        ENV_LOAD_FAILED,
        f"Could not load {env_file}: {type_name}: {exc}",
        type_name=type_name,
        traceback=format_user_traceback(exc) if with_traceback else None,
    )
    # The container log is what a human reads when the client is gone.
    logger.error("%s\n%s", error.message, error.traceback or "")
    return LoadedEnv(env_file, error=error)
