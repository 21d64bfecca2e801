"""Client processes for the exit-path tests (``tests/faults``, ``tests/unit/test_pool_exits.py``).

A client is a Python process running Rayfine code after :data:`PRELUDE`; it reports
JSON lines with ``report(**kw)`` and is ended by the test (an exception, ``sys.exit``,
a signal).  The prelude also registers a runtime ``slow``, modelled on a real engine:
the process runtime behind another process, which creates the container
``SLOW_START`` seconds (default 1.5) after being asked, whatever happens to the client
meanwhile; with ``SLOW_REPORT=1`` each start is first reported as ``{"starting": env_id}``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from typing import Callable

PRELUDE = """
import asyncio, json, os, signal, sys, threading, time, types
import rayfine_core as rf
from rayfine_core.testing.process_runtime import ProcessRuntime

ENGINE = '''
import pickle, sys, time
from rayfine_core.testing.process_runtime import ProcessRuntime
request = pickle.loads(sys.stdin.buffer.read())
time.sleep(float(sys.argv[1]))
handle = ProcessRuntime().start(request)
sys.stdout.buffer.write(pickle.dumps(handle))
'''

class Slow(ProcessRuntime):
    name = "slow"
    def start(self, request):
        import pickle, subprocess
        if os.environ.get("SLOW_REPORT") == "1":
            line = json.dumps({"starting": request.labels["rayfine.env_id"]}) + "\\n"
            os.write(1, line.encode())  # one write: starts in several threads must not interleave
        engine = subprocess.run(
            [sys.executable, "-c", ENGINE, os.environ.get("SLOW_START", "1.5")],
            input=pickle.dumps(request), capture_output=True, start_new_session=True,
        )
        return pickle.loads(engine.stdout)

@rf.hookimpl
def rayfine_runtimes():
    yield rf.RuntimeSpec(name="slow", factory=Slow)

from rayfine_core.plugins import register
register(types.SimpleNamespace(rayfine_runtimes=rayfine_runtimes), name="slow")

def report(**kw):
    print(json.dumps(kw), flush=True)
"""


def client(setup: str, body: str, **env: str) -> subprocess.Popen[str]:
    """Run :data:`PRELUDE`, then ``setup`` (the test's constants), then ``body`` (dedented)."""
    code = PRELUDE + setup + textwrap.dedent(body)
    return subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,  # a client may wait for a line before it ends itself
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )


def read(proc: subprocess.Popen[str]) -> dict:
    """The client's next report."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, f"the client exited early with {proc.wait()}"
    return json.loads(line)


def wait_until(predicate: Callable[[], object], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False
