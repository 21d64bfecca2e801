"""``rayfine_env``: the name users of the original project import, ``import rayfine_env as rf_env``.

A thin alias of :mod:`rayfine_core`: the very same objects (``rf_env.load_env is
rayfine_core.load_env``), nothing defined twice.  ``rayfine_env.errors`` is
``rayfine_core.errors``.
"""

from __future__ import annotations

import sys

import rayfine_core
from rayfine_core import *  # noqa: F403  (the public API, as listed in its __all__)
from rayfine_core import __all__ as __all__
from rayfine_core import __version__ as __version__

sys.modules[__name__ + ".errors"] = rayfine_core.errors  # `from rayfine_env.errors import ...`
