"""The shared conformance suite, run unchanged against the ``kubernetes`` runtime.

Same as ``pytest --pyargs rayfine_core.testing --rayfine-runtime kubernetes``
with the cluster up; here the cluster fixture brings it up, and the tests of
what a cluster cannot do are expected to fail, each with its reason, until
the suite skips by capability (then they skip, and the marks below can go).
"""

from __future__ import annotations

import pytest

pytest.importorskip("rayfine_kubernetes")

from rayfine_core.testing.test_conformance import *  # noqa: E402,F403

pytestmark = [pytest.mark.engine, pytest.mark.kubernetes]

CANNOT = {
    "test_network_none_still_serves_calls": "capability network_none=False: a pod always has"
    " its network; network='none' is a NetworkPolicy only where the cluster enforces them",
    "test_resource_limits_are_applied": "capability pids_limit=False: a pod's pids limit is a"
    " kubelet setting (memory and CPU: tests/kubernetes/test_cluster.py)",
    "test_published_port_is_loopback_only": "capability host_ports=False: the server is reached"
    " through the API server or the pod IP, not a port on this host",
}
