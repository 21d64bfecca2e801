"""The baselines Rayfine is measured against: the same image, without Rayfine.

A *bare* container runs the same image, plus FastAPI and uvicorn (Rayfine's
images carry neither: its server is standard library only), with its
command replaced by a minimal uvicorn app (FastAPI, or raw ASGI for the
floor) that imports the same ``env.py`` and serves ``POST /call`` by calling
the Actor directly: how affinetes serves an env.  It is
started with the docker SDK exactly as the docker runtime starts Rayfine's
(same call, capabilities dropped, no-new-privileges) and carries Rayfine's
ownership labels, so the orphan reaper removes it should this process be
killed.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Optional

from rayfine_core.build.wheelhouse import ensure_wheels
from rayfine_core.runtime.reaper import owner_labels
from rayfine_core.runtime.types import Endpoint
from rayfine_core.transport.client import Client

APP = r"""
import json, os, sys
sys.path[:0] = ["/opt/bare-site", "/app"]
import uvicorn
import env

actor = env.Actor()
HEALTH = b'{"status":"ok"}'

async def call(body):
    p = json.loads(body)
    result = await getattr(actor, p["method"])(*p.get("args", []), **p.get("kwargs", {}))
    return json.dumps({"result": result}).encode()

if os.environ["BARE_APP"] == "fastapi":
    from fastapi import FastAPI, Request
    from starlette.responses import Response
    app = FastAPI()

    @app.get("/health")
    async def health():
        return Response(HEALTH, media_type="application/json")

    @app.post("/call")
    async def post_call(request: Request):
        return Response(await call(await request.body()), media_type="application/json")
else:
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        out = await call(body) if scope["path"] == "/call" else HEALTH
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": out})

where = {"uds": "/run/bare/server.sock"} if os.environ["BARE_UDS"] == "1" else {"host": "0.0.0.0", "port": 8000}
uvicorn.run(app, log_level="warning", access_log=False, loop="asyncio", http="h11", lifespan="off", **where)
"""


BARE_DOCKERFILE = """FROM {base}
USER root
COPY wheels /tmp/bare-wheels
COPY install_wheels.py /tmp/install_wheels.py
RUN python3 /tmp/install_wheels.py /tmp/bare-wheels /opt/bare-site \\
    && rm -rf /tmp/bare-wheels /tmp/install_wheels.py
USER {user}
"""


def build_bare_image(docker: Any, base: str, tag: str) -> None:
    """``base`` plus FastAPI, uvicorn and theirs (the pinned wheels Rayfine keeps on the host)."""
    wheels = ensure_wheels()
    user = docker.images.get(base).attrs["Config"].get("User") or "root"
    with tempfile.TemporaryDirectory(prefix="rayfine-bench-bare-") as context:
        root = Path(context)
        shutil.copytree(wheels, root / "wheels", ignore=shutil.ignore_patterns(".complete"))
        installer = resources.files("rayfine_core.image").joinpath("install_wheels.py")
        (root / "install_wheels.py").write_text(installer.read_text())
        (root / "Dockerfile").write_text(BARE_DOCKERFILE.format(base=base, user=user))
        docker.images.build(path=context, tag=tag, rm=True, forcerm=True)


@dataclass
class Bare:
    """One running bare container."""

    container: Any
    endpoint: Endpoint
    socket_dir: Optional[Path] = None

    def stop(self) -> None:
        try:
            if self.container is not None:
                self.container.remove(force=True)
        finally:
            if self.socket_dir is not None:
                shutil.rmtree(self.socket_dir, ignore_errors=True)


def start_bare(docker: Any, image: str, app: str, transport: str, tracked: list[Bare]) -> Bare:
    """Start a bare container serving ``app`` ("fastapi" or "asgi") over ``transport``.

    The container is appended to ``tracked`` before it exists, so the
    caller's ``finally`` removes it even if this function is interrupted.
    """
    socket_dir = Path(tempfile.mkdtemp(prefix="rayfine-bench-")) if transport == "unix" else None
    extra: dict[str, Any] = {
        "environment": {"BARE_APP": app, "BARE_UDS": "1" if socket_dir else "0"}
    }
    if socket_dir is not None:
        socket_dir.chmod(0o777)
        extra["volumes"] = {str(socket_dir): {"bind": "/run/bare", "mode": "rw"}}
    else:
        extra["ports"] = {"8000/tcp": ("127.0.0.1", None)}
    bare = start_container(docker, image, ["python3", "-c", APP], tracked, socket_dir, **extra)
    if socket_dir is not None:
        bare.endpoint = Endpoint(unix_socket=str(socket_dir / "server.sock"))
    else:
        bare.container.reload()
        bare.endpoint = Endpoint(
            port=int(bare.container.attrs["NetworkSettings"]["Ports"]["8000/tcp"][0]["HostPort"])
        )
    return bare


def start_container(
    docker: Any,
    image: str,
    command: list[str],
    tracked: list[Bare],
    socket_dir: Optional[Path] = None,
    **extra: Any,
) -> Bare:
    """``docker run -d`` as the docker runtime does it, tracked for removal."""
    bare = Bare(container=None, endpoint=Endpoint(), socket_dir=socket_dir)
    tracked.append(bare)
    bare.container = docker.containers.run(
        image=image,
        command=command,
        detach=True,
        name=f"rayfine-bench-bare-{secrets.token_hex(4)}",
        labels=owner_labels(secrets.token_hex(6), "docker"),
        cap_drop=["ALL"],
        security_opt=["no-new-privileges:true"],
        **extra,
    )
    return bare


def base_url(endpoint: Endpoint) -> str:
    """The base URL httpx is given for ``endpoint`` (any host name over a Unix socket)."""
    return "http://rayfine" if endpoint.unix_socket else f"http://{endpoint.host}:{endpoint.port}"


def wait_until_ready(bare: Bare, timeout: float = 60.0) -> None:
    """Poll ``/health`` every 5 ms until it answers 200."""
    client = Client(bare.endpoint)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                if client.request("GET", "/health", timeout=2.0).status_code == 200:
                    return
            except Exception:
                pass  # not listening yet
            time.sleep(0.005)
        raise TimeoutError(
            f"bare container did not answer within {timeout:g}s:\n{bare.container.logs(tail=20).decode()}"
        )
    finally:
        client.close()
