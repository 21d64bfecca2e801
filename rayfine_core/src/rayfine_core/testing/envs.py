"""Sample environments the conformance suite builds (one image each, cached by content hash)."""

from __future__ import annotations

KITCHEN_SINK = '''
"""A test environment exercising every kind of method."""
import asyncio
import os
import time
from os.path import join  # imported: must not become a method


class Actor:
    """Holds state across calls."""

    def __init__(self):
        self.calls = 0
        self.secret = os.environ.get("SECRET_KEY", "")

    def add(self, a: int, b: int = 2) -> int:
        """Add two numbers."""
        self.calls += 1
        return a + b

    async def echo(self, *args, **kwargs):
        """Return what it was given."""
        await asyncio.sleep(0)
        return {"args": list(args), "kwargs": kwargs}

    def env(self, name: str):
        return os.environ.get(name)

    def has_secret(self) -> bool:
        return bool(self.secret)

    def fail(self, message: str = "boom"):
        raise ValueError(message)

    async def sleep(self, seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds

    def block(self, seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    def counter(self) -> int:
        return self.calls

    def unserialisable(self):
        return object()

    def security(self) -> dict:
        status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
        return {"CapEff": status["CapEff"].strip(), "NoNewPrivs": status.get("NoNewPrivs", "not reported").strip(),
                "uid": os.getuid()}

    def allocate(self, megabytes: int) -> int:
        """Hold ``megabytes`` of touched memory (to provoke the OOM killer)."""
        self.hoard = [bytearray(1024 * 1024) for _ in range(megabytes)]
        return len(self.hoard)

    def interfaces(self) -> list:
        return sorted(os.listdir("/sys/class/net"))

    def cgroup_limits(self) -> dict:
        """Memory, pids and CPU-quota limits as the container's cgroup (v1 or v2) reports them."""
        def first(*paths):
            for path in paths:
                if os.path.exists(path):
                    return open(path).read().strip()
            return None
        return {
            "memory": first("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"),
            "pids": first("/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/pids/pids.max"),
            "cpu": first("/sys/fs/cgroup/cpu.max", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
                         "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us"),
        }

    def die(self, code: int = 3):
        os._exit(code)

    def shout(self, text: str, times: int = 1) -> int:
        """Print ``text`` to the container's output ``times`` times."""
        for _ in range(times):
            print(text, flush=True)
        return times

    def token_traces(self) -> dict:
        """Where env code (or a child process of it) could find the server's token."""
        # What a child process would read: the environment this process was started with.
        environ = open("/proc/self/environ", "rb").read().decode(errors="replace")
        return {
            "start_environ": any(e.startswith("RAYFINE_TOKEN=") for e in environ.split(chr(0))),
            "own_environ": "RAYFINE_TOKEN" in os.environ,
            "token_file": os.path.exists("/run/rayfine/token"),
        }

    def cmdline_of_pid1(self) -> str:
        return open("/proc/1/cmdline", "rb").read().replace(bytes(1), b" ").decode()

    def _private(self):
        return "hidden"


def square(x: float) -> float:
    """A module-level function."""
    return x * x
'''

INIT_FAILS = """
class Actor:
    def __init__(self):
        raise RuntimeError("init exploded")

    def ping(self):
        return "pong"
"""

IMPORT_FAILS = """
raise ImportError("env.py cannot import its dependency")

class Actor:
    def ping(self):
        return "pong"
"""

SLOW_IMPORT = """
import time
time.sleep(120)

def ping():
    return "pong"
"""

HTTP_APP = '''
"""An existing FastAPI app with state across calls and no /health route."""
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

app = FastAPI()
counters = {}


class Bump(BaseModel):
    name: str
    by: int = 1


@app.post("/bump")
def bump(request: Bump) -> dict:
    """Add to a named counter."""
    counters[request.name] = counters.get(request.name, 0) + request.by
    return {"name": request.name, "value": counters[request.name]}


@app.post("/fail")
def fail() -> dict:
    raise HTTPException(409, "conflict on purpose")
'''

HTTP_DOCKERFILE = """\
ARG RAYFINE_BASE_IMAGE
FROM ${RAYFINE_BASE_IMAGE}
COPY .rayfine /tmp/rayfine
RUN python3 /tmp/rayfine/install_wheels.py /tmp/rayfine/wheels /opt/site && rm -rf /tmp/rayfine
ENV PYTHONPATH=/opt/site
WORKDIR /app
COPY env.py /app/env.py
CMD ["python3", "-m", "uvicorn", "env:app", "--host", "0.0.0.0", "--port", "8000"]
"""

EPISODES = '''
"""Episodes as sessions: each session is its own Actor, with its own seed and step count."""
import asyncio

CLOSED = []


class Actor:
    max_sessions = 1000

    def __init__(self, seed: int = 0, fail: bool = False):
        if fail:
            raise ValueError(f"constructor refused seed {seed}")
        self.seed = seed
        self.steps = 0

    def reset(self) -> int:
        self.steps = 0
        return self.seed

    def step(self, action: int) -> dict:
        self.steps += 1
        return {"seed": self.seed, "steps": self.steps, "action": action}

    async def wait(self, seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds

    def close(self):
        CLOSED.append(self.seed)


def closed_seeds() -> list:
    """Seeds of the sessions whose Actor.close() ran, in order."""
    return CLOSED
'''

ENVS = {
    "kitchen-sink": KITCHEN_SINK,
    "episodes": EPISODES,
    "init-fails": INIT_FAILS,
    "import-fails": IMPORT_FAILS,
    "slow-import": SLOW_IMPORT,
    "http-app": {"env.py": HTTP_APP, "Dockerfile": HTTP_DOCKERFILE},
}
"""Name -> env.py source, or name -> {file name: content}."""
