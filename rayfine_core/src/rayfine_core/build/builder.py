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
from ..runtime.types import BuildRequest, EnvType
from . import context as build_context
from .server_source import server_package_dir
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
    :return: the id of the final image.
    """
    info = inspect_env_dir(env_path)
    repo, tag = split_tag(image_tag)
    args = _check_buildargs(buildargs)
    kind = EnvType(env_type) if env_type else info.env_type
    emit = None if quiet else (on_output or (lambda line: print(line, flush=True)))
    rt = get_runtime(runtime)
    final = f"{repo}:{tag}"
    args.setdefault("RAYFINE_BASE_IMAGE", base_image())
    digest = _content_hash(info, kind, args)
    if not nocache and _existing_hash(rt, final) == digest:
        if emit:
            emit(f"rayfine: {final} is up to date (content hash {digest[:12]}), nothing to build")
        return rt.image_id(final)
    if kind is EnvType.HTTP_BASED:
        return _build_http(rt, info, final, args, digest, nocache, emit)
    return _build_function(rt, info, final, args, digest, nocache, emit)


def _check_buildargs(buildargs: Optional[Mapping[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (buildargs or {}).items():
        if not isinstance(key, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            raise ValidationError(f"Invalid build arg name {key!r}: use letters, digits and '_'.")
        out[key] = str(value)
    return out


def _build_http(
    rt: Runtime, info: EnvInfo, image: str, args: dict[str, str], digest: str, nocache: bool, emit
) -> str:
    if info.dockerfile is None:
        raise ValidationError(
            f"HTTP-based environment {str(info.path)!r} needs a Dockerfile whose CMD runs the app"
            ' (e.g. CMD ["uvicorn", "env:app", "--host", "0.0.0.0", "--port", "8000"]).'
        )
    extra = {
        labels.OWNER: labels.OWNER_VALUE,
        labels.ENV_TYPE: EnvType.HTTP_BASED.value,
        labels.CONTENT_HASH: digest,
    }
    if OFFLINE_WHEELS_DIR not in info.dockerfile.read_text(errors="replace"):
        return _run_build(
            rt, BuildRequest(info.path, "Dockerfile", image, args, extra, nocache, emit)
        )
    with tempfile.TemporaryDirectory(prefix="rayfine-build-") as tmp:
        context = build_context.stage(info.path, Path(tmp) / "context")
        _stage_offline_wheels(context / OFFLINE_WHEELS_DIR, emit)
        return _run_build(
            rt, BuildRequest(context, "Dockerfile", image, args, extra, nocache, emit)
        )


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
    rt: Runtime, info: EnvInfo, final: str, args: dict[str, str], digest: str, nocache: bool, emit
) -> str:
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
        server_context = _stage_server_layer(info, base, Path(tmp) / "server", digest, emit)
        return _run_build(
            rt, BuildRequest(server_context, "Dockerfile", final, {}, {}, nocache, emit)
        )


def _run_build(rt: Runtime, request: BuildRequest) -> str:
    get_manager().modify("rayfine_build", request=request, runtime=rt.name)
    return rt.build(request)


def _existing_hash(rt: Runtime, image: str) -> Optional[str]:
    try:
        return rt.image_labels(image).get(labels.CONTENT_HASH)
    except ImageNotFoundError:
        return None


def _content_hash(info: EnvInfo, kind: EnvType, args: Mapping[str, str]) -> str:
    """Hash everything the final image depends on that Rayfine can see."""
    h = hashlib.sha256(kind.value.encode())
    build_context.digest(info.path, h)  # refuses links out of the directory
    if kind is EnvType.FUNCTION_BASED:  # the injected server is part of the image
        server = server_package_dir()
        for path in sorted(server.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                h.update(str(path.relative_to(server)).encode() + b"\0" + path.read_bytes())
        for name in ("install_wheels.py", "rayfine_start.py", "egress_forward.py"):
            h.update(resources.files("rayfine_core.image").joinpath(name).read_bytes())
        h.update(_server_dockerfile("", "").encode())  # how the layer is built is an input too
    h.update(repr(sorted(args.items())).encode())
    return h.hexdigest()


def _default_dockerfile(context: Path) -> str:
    lines = ["ARG RAYFINE_BASE_IMAGE", "FROM ${RAYFINE_BASE_IMAGE}", "WORKDIR /app", "COPY . /app"]
    if (context / "requirements.txt").is_file():
        lines.append(
            "RUN PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --no-cache-dir -r requirements.txt"
        )
    return "\n".join(lines) + "\n"


def _stage_server_layer(info: EnvInfo, base: str, context: Path, digest: str, emit) -> Path:
    context.mkdir(parents=True)
    _stage_offline_wheels(context, emit)
    shutil.copytree(
        server_package_dir(),
        context / "rayfine_server",
        ignore=shutil.ignore_patterns("__pycache__", "tests"),
    )
    for name in ("rayfine_start.py", "egress_forward.py"):  # run in the image, stdlib only
        (context / name).write_bytes(
            resources.files("rayfine_core.image").joinpath(name).read_bytes()
        )
    shutil.copyfile(info.path / "env.py", context / "env.py")  # walk() vetted any link
    (context / "Dockerfile").write_text(_server_dockerfile(base, digest))
    return context


def _server_dockerfile(base: str, digest: str) -> str:
    site = "/opt/rayfine/site"
    return f"""\
FROM {base} AS rayfine-deps
COPY wheels /tmp/rayfine-wheels
COPY install_wheels.py /tmp/install_wheels.py
COPY rayfine_server {site}/rayfine_server
COPY rayfine_start.py egress_forward.py {site}/
RUN python3 /tmp/install_wheels.py /tmp/rayfine-wheels {site} \\
 && (python3 -m compileall -q -j 0 --invalidation-mode unchecked-hash {site} >/dev/null || true)

FROM {base}
COPY --from=rayfine-deps {site} {site}
COPY env.py /app/env.py
ENV RAYFINE_ENV_DIR=/app PYTHONUNBUFFERED=1
LABEL {labels.OWNER}="{labels.OWNER_VALUE}" {labels.ENV_TYPE}="{EnvType.FUNCTION_BASED.value}" \\
      {labels.CONTENT_HASH}="{digest}" {labels.SERVER_PORT}="8000"
EXPOSE 8000
ENTRYPOINT []
CMD ["python3", "{site}/rayfine_start.py"]
"""
