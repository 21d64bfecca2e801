"""The shared conformance suite, run unchanged against the ``kubernetes`` runtime.

Same as ``pytest --pyargs rayfine_core.testing --rayfine-runtime kubernetes``
with the cluster up; here the cluster fixture brings it up.  What a cluster
cannot do is skipped by the suite itself, from the runtime's capabilities.
"""

from __future__ import annotations

import pytest

pytest.importorskip("rayfine_kubernetes")

from rayfine_core.testing.test_conformance import *  # noqa: F403

pytestmark = [pytest.mark.engine, pytest.mark.kubernetes]
