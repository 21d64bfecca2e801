"""``python -m rayfine_remote.gateway ARGS``: the same as ``rayfine serve ARGS``."""

from __future__ import annotations

import sys

from rayfine_core.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
