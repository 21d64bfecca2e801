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
from typing import Any, Optional

from ..errors import ValidationError
from ..runtime import labels
from ..runtime.types import EnvType, ServerSpec

SITE = "/opt/rayfine/site"
FUNCTION_PORT = 8000
PROXY_PORT = 8001
"""The server's TCP port in proxy mode: the app keeps its own (8000)."""
APP_PORT = 8000


def site_files(server: ServerSpec) -> dict[str, Path]:
    """Everything the layer puts under :data:`SITE`: the server's files and the egress forwarder."""
    files = dict(server.files())
    forwarder = resources.files("rayfine_core.image").joinpath("egress_forward.py")
    files.setdefault("egress_forward.py", Path(str(forwarder)))
    for relative in files:
        if relative.startswith("/") or ".." in Path(relative).parts:
            raise ValidationError(
                f"Server {server.name!r} names a file outside the site: {relative}"
            )
    return files


def digest(server: ServerSpec, into: Any) -> None:
    """Feed the server's files (their paths and bytes) into a hash."""
    for relative, source in sorted(site_files(server).items()):
        paths = sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else [source]
        for path in paths:
            if "__pycache__" not in path.parts:
                name = relative if path == source else f"{relative}/{path.relative_to(source)}"
                into.update(name.encode() + b"\0" + path.read_bytes() + b"\0")


def stage(context: Path, env_py: Optional[Path], server: ServerSpec) -> Path:
    """Fill ``context`` with the server's files (under ``site/``) and, maybe, env.py."""
    site = context / "site"
    site.mkdir(parents=True)
    for relative, source in site_files(server).items():
        target = site / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copyfile(source, target)
    if env_py is not None:
        shutil.copyfile(env_py, context / "env.py")  # context.walk() vetted any link
    return context


ENV_PY_COPY = "COPY env.py /app/env.py"
"""How a layer on the environment's own image copies the code (staged by :func:`stage`)."""


def dockerfile(
    base: str,
    digest: str,
    kind: EnvType,
    app_command: Optional[list[str]],
    server: ServerSpec,
    code: Optional[str] = ENV_PY_COPY,
) -> str:
    """The layer's Dockerfile on ``base``: see :func:`instructions`."""
    lines = [f"FROM {base}", *instructions(digest, kind, app_command, server, code)]
    return "\n".join(lines) + "\n"


def instructions(
    digest: str,
    kind: EnvType,
    app_command: Optional[list[str]],
    server: ServerSpec,
    code: Optional[str],
) -> list[str]:
    """The server (from the context's ``site/``), the code, the settings and the labels.

    ``code`` is the instruction that copies the environment's code (None: no code,
    e.g. an http app or a dev image); it comes after every other step so that an
    edit leaves them cached, and only the label (with the content hash) follows it.
    """
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
    return [
        f"COPY site/ {SITE}/",
        f"RUN (python3 -m compileall -q -j 0 --invalidation-mode unchecked-hash {SITE}"
        " >/dev/null 2>&1 || true)",
        "ENV " + " ".join(f"{k}={json.dumps(v)}" for k, v in env.items()),
        f"EXPOSE {port}",
        "ENTRYPOINT []",
        f"CMD {json.dumps(list(server.command))}",
        *([code] if code and not proxy else []),
        "LABEL " + " ".join(f"{k}={json.dumps(v)}" for k, v in image_labels.items()),
    ]


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
