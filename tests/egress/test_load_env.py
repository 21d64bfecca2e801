"""``load_env(..., egress=[...], isolation=...)`` end to end: only the listed hosts are reachable.

Each variant runs in a fresh client process (the process-wide proxy reads
``RAYFINE_EGRESS_HOSTS``, which maps the test's fake names to the fake
internet's addresses), builds a tiny env that fetches URLs through the proxy
variables Rayfine sets, and reports what it reached.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rayfine_core.egress.isolation import gvisor_available

from .netns import FakeInternet

pytestmark = [pytest.mark.engine, pytest.mark.netns]

ENV_PY = '''
import os, ssl, urllib.request


def fetch(url: str) -> dict:
    """GET ``url`` the way env code does: through HTTPS_PROXY, checking the server's certificate."""
    context = ssl.create_default_context(cadata=os.environ["TEST_CA"])
    try:
        with urllib.request.urlopen(url, context=context, timeout=10) as response:
            return {"status": response.status}
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def interfaces() -> list:
    return sorted(os.listdir("/sys/class/net"))
'''

CLIENT = """
import json, sys
import rayfine_core as rf
from rayfine_core.egress import EgressPolicy

engine, isolation, ca, allowed_ip, private = sys.argv[1:6]
rf.build_image_from_env(sys.argv[6], "rayfine-test-egress-env:latest", quiet=True, runtime=engine)
policy = EgressPolicy(["api.allowed.test", "*.models.test"], allow_private=[private])
with rf.load_env("rayfine-test-egress-env:latest", runtime=engine, isolation=isolation,
                 egress=policy, env_vars={"TEST_CA": ca}) as env:
    out = {
        "allowed": env.fetch("https://api.allowed.test/"),
        "wildcard": env.fetch("https://x.models.test/"),
        "not_listed": env.fetch("https://denied.test/"),
        "raw_ip": env.fetch(f"https://{allowed_ip}/"),
        "other_port": env.fetch("https://api.allowed.test:8443/"),
        "interfaces": env.interfaces(),
    }
    stats = env.egress_stats()
    out["stats"] = {"allowed": stats.allowed, "denied": stats.denied}
print(json.dumps(out))
"""


@pytest.mark.parametrize("engine", ["docker", "podman"])
@pytest.mark.parametrize("isolation", ["container", "gvisor"])
def test_only_listed_hosts_are_reachable(fake_internet: FakeInternet, tmp_path, engine, isolation):
    if isolation == "gvisor" and gvisor_available(engine):
        pytest.skip(f"gVisor on {engine}: {gvisor_available(engine)}")
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    (env_dir / "env.py").write_text(ENV_PY)
    hosts = tmp_path / "hosts"
    names = "api.allowed.test x.models.test denied.test"
    hosts.write_text(f"{fake_internet.allowed_ip} {names}\n")
    args = [
        engine,
        isolation,
        Path(fake_internet.cert).read_text(),
        fake_internet.allowed_ip,
        str(fake_internet.subnet),
        str(env_dir),
    ]
    environ = {
        **os.environ,
        "RAYFINE_EGRESS_HOSTS": str(hosts),
        "RAYFINE_BASE_IMAGE": os.environ.get("RAYFINE_BASE_IMAGE", "rayfine/python:3.11-bookworm"),
    }
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CLIENT), *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["allowed"] == {"status": 200} and out["wildcard"] == {"status": 200}
    for refused in ("not_listed", "raw_ip", "other_port"):
        assert "403" in out[refused].get("error", ""), (refused, out[refused])
    assert out["interfaces"] == ["lo"]
    assert out["stats"]["allowed"] == 2 and out["stats"]["denied"] == 3
