"""The layer Rayfine adds on top of an environment's own image: its server, and how it starts.

Function-based images get the server serving env.py; http-based images get
the same server in proxy mode in front of the app's own command, so both
kinds answer only a client with the token, over the private run directory.
The server is standard library only: nothing is installed next to the
environment's own packages.
"""

from __future__ import annotations

import json
import re
import shutil
from importlib import resources
from pathlib import Path
from typing import Optional

from ..errors import ValidationError
from ..runtime import labels
from ..runtime.types import EnvType
from .server_source import server_package_dir

SITE = "/opt/rayfine/site"
IMAGE_FILES = ("rayfine_start.py", "egress_forward.py")
"""Files of ``rayfine_core.image`` that run in the image (stdlib only), beside the server."""
FUNCTION_PORT = 8000
PROXY_PORT = 8001
"""The server's TCP port in proxy mode: the app keeps its own (8000)."""
APP_PORT = 8000


def stage(context: Path, env_py: Optional[Path]) -> Path:
    """Fill ``context`` with the server package, the in-image helpers and (maybe) env.py."""
    context.mkdir(parents=True)
    shutil.copytree(
        server_package_dir(),
        context / "rayfine_server",
        ignore=shutil.ignore_patterns("__pycache__", "tests", "bench_*.py"),
    )
    for name in IMAGE_FILES:
        (context / name).write_bytes(
            resources.files("rayfine_core.image").joinpath(name).read_bytes()
        )
    if env_py is not None:
        shutil.copyfile(env_py, context / "env.py")  # context.walk() vetted any link
    return context


def dockerfile(base: str, digest: str, kind: EnvType, app_command: Optional[list[str]]) -> str:
    """The layer's Dockerfile: the server, its settings, and the image's labels."""
    proxy = kind is EnvType.HTTP_BASED
    env = {"PYTHONUNBUFFERED": "1"}
    if proxy:
        assert app_command is not None
        env.update(
            RAYFINE_APP_COMMAND=json.dumps(app_command),
            RAYFINE_APP_PORT=str(APP_PORT),
            RAYFINE_PORT=str(PROXY_PORT),
        )
    else:
        env["RAYFINE_ENV_DIR"] = "/app"
    port = PROXY_PORT if proxy else FUNCTION_PORT
    image_labels = {
        labels.OWNER: labels.OWNER_VALUE,
        labels.ENV_TYPE: kind.value,
        labels.CONTENT_HASH: digest,
        labels.SERVER_PORT: str(port),
        labels.SERVED: "1",
    }
    lines = [
        f"FROM {base}",
        f"COPY rayfine_server {SITE}/rayfine_server",
        f"COPY {' '.join(IMAGE_FILES)} {SITE}/",
        f"RUN (python3 -m compileall -q -j 0 --invalidation-mode unchecked-hash {SITE}"
        " >/dev/null 2>&1 || true)",
        *([] if proxy else ["COPY env.py /app/env.py"]),
        "ENV " + " ".join(f"{k}={json.dumps(v)}" for k, v in env.items()),
        "LABEL " + " ".join(f"{k}={json.dumps(v)}" for k, v in image_labels.items()),
        f"EXPOSE {port}",
        "ENTRYPOINT []",
        f'CMD ["python3", "{SITE}/rayfine_start.py"]',
    ]
    return "\n".join(lines) + "\n"


_INSTRUCTION = re.compile(r"^\s*(FROM|CMD|ENTRYPOINT)\s+(.+)$", re.IGNORECASE | re.MULTILINE)


def app_command(dockerfile_text: str) -> list[str]:
    """The command the app's image runs: its final stage's ENTRYPOINT followed by its CMD.

    :raises ValidationError: the Dockerfile sets neither.
    """
    joined = re.sub(r"\\\r?\n", " ", dockerfile_text)
    entrypoint: list[str] = []
    cmd: list[str] = []
    for word, rest in _INSTRUCTION.findall(joined):
        if word.upper() == "FROM":
            entrypoint, cmd = [], []  # a new stage starts from its base's settings
        elif word.upper() == "ENTRYPOINT":
            entrypoint, cmd = _words(rest), []
        else:
            cmd = _words(rest)
    if not entrypoint and not cmd:
        raise ValidationError(
            "An http-based environment's Dockerfile needs a CMD (or ENTRYPOINT) that runs the"
            ' app, e.g. CMD ["python3", "-m", "uvicorn", "env:app", "--host", "0.0.0.0",'
            ' "--port", "8000"].'
        )
    return entrypoint + cmd


def _words(text: str) -> list[str]:
    text = text.strip()
    if text.startswith("["):
        try:
            return [str(word) for word in json.loads(text)]
        except ValueError:
            pass
    return ["/bin/sh", "-c", text]
