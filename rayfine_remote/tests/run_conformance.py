"""Run the shared conformance suite in remote mode, against a gateway started for the run.

    python rayfine_remote/tests/run_conformance.py [--backing process|docker|podman] [pytest args]

Starts ``rayfine serve`` (in a process of its own, on 127.0.0.1, TLS with a
self-signed certificate, a throw-away tokens file and state directory) on
the backing runtime, points ``RAYFINE_REMOTE_URL``/``RAYFINE_REMOTE_TOKEN``
at it, runs ``pytest --pyargs rayfine_core.testing --rayfine-runtime
remote``, stops the gateway with SIGTERM, and fails if any container the
gateway started is left on the backing runtime.  Exit code: pytest's, or 3
for a leak.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backing", default="process")
    args, rest = parser.parse_known_args()
    from rayfine_remote.gateway.tokens import add

    with tempfile.TemporaryDirectory(prefix="rayfine-conformance-") as tmp:
        work = Path(tmp)
        name = f"conformance-{os.getpid()}"
        tokens_file = work / "tokens.json"
        token = add(
            tokens_file,
            "conformance",
            {"images": ["rayfine-conformance-*"], "build": True, "max_envs": 64,
             "starts_per_minute": 100000},
        )  # fmt: skip
        gateway = subprocess.Popen(
            [sys.executable, "-m", "rayfine_remote.gateway", "--runtime", args.backing,
             "--tokens", str(tokens_file), "--name", name, "--port", "0",
             "--state-dir", str(work / "state"), "--audit-log", str(work / "audit.log")],
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        try:
            assert gateway.stdout is not None
            line = gateway.stdout.readline()
            if "ready: " not in line:
                print(f"the gateway did not start: {line!r}", file=sys.stderr)
                return 2
            env = {
                **os.environ,
                "RAYFINE_REMOTE_URL": line.split("ready: ")[1].strip(),
                "RAYFINE_REMOTE_TOKEN": token,
            }
            command = [sys.executable, "-m", "pytest", "--pyargs", "rayfine_core.testing",
                       "--rayfine-runtime", "remote", *rest]  # fmt: skip
            status = subprocess.run(command, env=env).returncode
        finally:
            gateway.send_signal(signal.SIGTERM)
            try:
                gateway.wait(60)
            except subprocess.TimeoutExpired:
                gateway.kill()
                gateway.wait(10)
        return 3 if _leaked(args.backing, name) else status


def _leaked(backing: str, gateway: str) -> bool:
    import rayfine_core as rf
    from rayfine_remote.gateway.engine import GATEWAY_LABEL

    left = rf.get_runtime(backing).list_containers({GATEWAY_LABEL: gateway})
    for record in left:
        print(f"LEAK: {record.name} ({record.status}) left by the gateway", file=sys.stderr)
    return bool(left)


if __name__ == "__main__":
    sys.exit(main())
