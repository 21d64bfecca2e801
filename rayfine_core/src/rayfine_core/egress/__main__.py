"""Entry point of ``python -m rayfine_core.egress`` (see :mod:`.serve`)."""

import sys

from .serve import main

sys.exit(main())
