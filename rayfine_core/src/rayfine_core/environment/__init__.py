"""The life of an environment and its two faces.

``life`` owns one environment's life (start, calls, restart, stop, attach),
``faces`` are the blocking and asyncio objects users hold, ``container``
plans, starts and removes one container, ``registry`` stops what is left at
exit, ``statefiles`` remembers detached environments, ``rundir`` keeps the
private host directories, ``options`` validates ``load_env``'s settings.
"""

from __future__ import annotations

from .faces import AsyncEnvironment, Environment
from .life import Life, State
from .options import EnvOptions

__all__ = ["AsyncEnvironment", "EnvOptions", "Environment", "Life", "State"]
