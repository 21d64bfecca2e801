"""Build environment images.

Function-based environments build in two stages: the user's Dockerfile (or
a default one on ``RAYFINE_BASE_IMAGE``) becomes ``<tag>-base``, then a
server layer adds the Rayfine server and its pinned wheels to make ``<tag>``.
HTTP-based environments are built as they are, in one stage.  A final image
whose content hash label matches the inputs is reused without building.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from importlib import resources
from pathlib import Path
from typing import Callable, Mapping, Optional

from ..runtime import labels
from .detect import EnvInfo, inspect_env_dir
from ..errors import ImageNotFoundError, ValidationError
from ..plugins.manager import get_manager, get_runtime
from ..runtime.base import Runtime
from ..runtime.types import BuildRequest, EnvType, ServerSpec
from . import context as build_context
from . import layer
from .wheelhouse import ensure_wheels

DEFAULT_BASE_IMAGE = "python:3.11-slim"
OFFLINE_WHEELS_DIR = ".rayfine"
_TAG_RE = re.compile(
    r"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,100})?$"
)


def base_image() -> str:
    """The image a default (Dockerfile-less) environment starts from."""
    return os.environ.get("RAYFINE_BASE_IMAGE", DEFAULT_BASE_IMAGE)


def split_tag(image_tag: str) -> tuple[str, str]:
    """Split ``repo:tag`` (``latest`` when absent), checking it is a valid reference."""
    if not isinstance(image_tag, str) or not _TAG_RE.fullmatch(image_tag):
        raise ValidationError(
            f"Invalid image tag {image_tag!r}: use lowercase `name` or `name:tag`"
            " (letters, digits, '.', '_', '-'), e.g. 'affine:latest'."
        )
    repo, _, tag = (
        image_tag.rpartition(":") if ":" in image_tag.split("/")[-1] else (image_tag, "", "latest")
    )
    return repo, tag


def build_image_from_env(
    env_path: "str | os.PathLike[str]",
    image_tag: str,
    nocache: bool = False,
    quiet: bool = False,
    buildargs: Optional[Mapping[str, str]] = None,
    *,
    runtime: str = "docker",
    env_type: "EnvType | str | None" = None,
    on_output: Optional[Callable[[str], None]] = None,
    server: str = "python",
) -> str:
    """Build the image for the environment in ``env_path`` and tag it ``image_tag``.

    :param env_path: directory with ``env.py`` (and optionally a Dockerfile).
    :param image_tag: ``name[:tag]`` of the final image.
    :param nocache: rebuild every layer (and ignore the content-hash cache).
    :param quiet: print no build output.
    :param buildargs: ``ARG`` values for the user's Dockerfile.
    :param runtime: the runtime that builds (``"docker"``, ``"podman"``, ...).
    :param env_type: override the detected type (``"function_based"``/``"http_based"``).
    :param on_output: receive each output line instead of printing it.
    :param server: the in-image server, by name (``python``: Rayfine's own; plugins add more).
    :return: the id of the final image.
    """
    info = inspect_env_dir(env_path)
    repo, tag = split_tag(image_tag)
    args = _check_buildargs(buildargs)
    kind = EnvType(env_type) if env_type else info.env_type
    emit = None if quiet else (on_output or (lambda line: print(line, flush=True)))
    rt = get_runtime(runtime)
    spec = get_manager().server(server)
    final = f"{repo}:{tag}"
    args.setdefault("RAYFINE_BASE_IMAGE", base_image())
    digest = _content_hash(info, kind, args, spec)
    if not nocache and _existing_hash(rt, final) == digest:
        if emit:
            emit(f"rayfine: {final} is up to date (content hash {digest[:12]}), nothing to build")
        return rt.image_id(final)
    if kind is EnvType.HTTP_BASED:
        return _build_http(rt, info, final, args, digest, nocache, emit, spec)
    return _build_function(rt, info, final, args, digest, nocache, emit, spec)


def _check_buildargs(buildargs: Optional[Mapping[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (buildargs or {}).items():
        if not isinstance(key, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            raise ValidationError(f"Invalid build arg name {key!r}: use letters, digits and '_'.")
        out[key] = str(value)
    return out


def _build_http(
    rt: Runtime,
    info: EnvInfo,
    final: str,
    args: dict[str, str],
    digest: str,
    nocache: bool,
    emit,
    server: ServerSpec,
) -> str:
    """The app's own Dockerfile, then Rayfine's server in front of its command (proxy mode)."""
    if info.dockerfile is None:
        raise ValidationError(
            f"HTTP-based environment {str(info.path)!r} needs a Dockerfile whose CMD runs the app"
            ' (e.g. CMD ["uvicorn", "env:app", "--host", "0.0.0.0", "--port", "8000"]).'
        )
    command = layer.app_command(info.dockerfile.read_text(errors="replace"))
    base = f"{final}-base"
    with tempfile.TemporaryDirectory(prefix="rayfine-build-") as tmp:
        context = info.path
        if OFFLINE_WHEELS_DIR in info.dockerfile.read_text(errors="replace"):
            context = build_context.stage(info.path, Path(tmp) / "context")
            _stage_offline_wheels(context / OFFLINE_WHEELS_DIR, emit)
        _run_build(rt, BuildRequest(context, "Dockerfile", base, args, {}, nocache, emit))
        layer_dir = Path(tmp) / "server"
        return _build_layer(rt, base, final, layer_dir, digest, nocache, emit, server, command)


def _stage_offline_wheels(dest: Path, emit) -> None:
    """Put the pinned FastAPI/uvicorn wheels and their installer in the build context.

    A Dockerfile that mentions ``.rayfine/`` gets them, so an http-based app can
    install its server offline: ``RUN python3 .rayfine/install_wheels.py .rayfine/wheels /opt/site``.
    """
    build_context.clear(dest)
    shutil.copytree(
        ensure_wheels(emit), dest / "wheels", ignore=shutil.ignore_patterns(".complete")
    )
    (dest / "install_wheels.py").write_bytes(
        resources.files("rayfine_core.image").joinpath("install_wheels.py").read_bytes()
    )


def _build_function(
    rt: Runtime,
    info: EnvInfo,
    final: str,
    args: dict[str, str],
    digest: str,
    nocache: bool,
    emit,
    server: ServerSpec,
) -> str:
    """The env's Dockerfile (or the default one), then Rayfine's server serving env.py."""
    base = f"{final}-base"
    with tempfile.TemporaryDirectory(prefix="rayfine-build-") as tmp:
        if info.dockerfile is not None:
            stage_one = BuildRequest(info.path, "Dockerfile", base, args, {}, nocache, emit)
        else:
            context = build_context.stage(info.path, Path(tmp) / "base")
            dockerfile = build_context.clear(context / ".rayfine.Dockerfile")
            dockerfile.write_text(_default_dockerfile(context))
            stage_one = BuildRequest(context, ".rayfine.Dockerfile", base, args, {}, nocache, emit)
        _run_build(rt, stage_one)
        layer_dir = Path(tmp) / "server"
        env_py = info.path / "env.py"
        return _build_layer(rt, base, final, layer_dir, digest, nocache, emit, server, None, env_py)


def _build_layer(
    rt: Runtime,
    base: str,
    final: str,
    context: Path,
    digest: str,
    nocache: bool,
    emit,
    server: ServerSpec,
    app_command: Optional[list[str]],
    env_py: Optional[Path] = None,
) -> str:
    kind = EnvType.HTTP_BASED if app_command is not None else EnvType.FUNCTION_BASED
    layer.stage(context, env_py, server)
    (context / "Dockerfile").write_text(layer.dockerfile(base, digest, kind, app_command, server))
    return _run_build(rt, BuildRequest(context, "Dockerfile", final, {}, {}, nocache, emit))


def _run_build(rt: Runtime, request: BuildRequest) -> str:
    get_manager().modify("rayfine_build", request=request, runtime=rt.name)
    return rt.build(request)


def _existing_hash(rt: Runtime, image: str) -> Optional[str]:
    try:
        return rt.image_labels(image).get(labels.CONTENT_HASH)
    except ImageNotFoundError:
        return None


def _content_hash(info: EnvInfo, kind: EnvType, args: Mapping[str, str], server: ServerSpec) -> str:
    """Hash everything the final image depends on that Rayfine can see."""
    h = hashlib.sha256(kind.value.encode())
    build_context.digest(info.path, h)  # refuses links out of the directory
    layer.digest(server, h)  # the injected server is part of every image
    h.update(resources.files("rayfine_core.image").joinpath("install_wheels.py").read_bytes())
    h.update(layer.dockerfile("", "", kind, ["app"], server).encode())  # how it is built, too
    h.update(repr(sorted(args.items())).encode())
    return h.hexdigest()


def _default_dockerfile(context: Path) -> str:
    lines = ["ARG RAYFINE_BASE_IMAGE", "FROM ${RAYFINE_BASE_IMAGE}", "WORKDIR /app", "COPY . /app"]
    if (context / "requirements.txt").is_file():
        lines.append(
            "RUN PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --no-cache-dir -r requirements.txt"
        )
    return "\n".join(lines) + "\n"
