"""Build environment images.

Function-based environments without a Dockerfile build from one generated
Dockerfile: the base image, then requirements.txt (installed from ``wheels/``
when there are wheels, *before* the code is copied), then the server layer
(:mod:`.layer`: the in-image server's files, its settings), then the code.
An edit to env.py leaves every step but the code copy and the label in the
engine's cache.  With the environment's own Dockerfile, that Dockerfile
becomes ``<tag>-base`` and the server layer goes on top.  HTTP-based
environments are built from their Dockerfile into ``<tag>-base`` and get the
server in proxy mode in front of the app's command.  A final image whose
content hash label matches the inputs is reused without building.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Callable, Iterator, Mapping, Optional, Sequence

from ..errors import ImageBuildError, ImageNotFoundError, ValidationError
from ..plugins.manager import get_manager, get_runtime
from ..runtime import labels
from ..runtime.base import Runtime
from ..runtime.types import BuildRequest, EnvType, ServerSpec
from . import context as build_context
from . import deps as dependencies
from . import layer
from .deps import Dependencies, find_dependencies
from .detect import EnvInfo, inspect_env_dir
from .diagnose import explain
from .progress import BuildOutput, cleaned
from .wheelhouse import ensure_wheels

DEFAULT_BASE_IMAGE = "python:3.11-slim"
OFFLINE_WHEELS_DIR = ".rayfine"
_IGNORE_FILES = (".dockerignore", ".containerignore")
_TAG_RE = re.compile(
    r"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,100})?$"
)
Emit = Optional[Callable[[str], None]]


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
    env_path: str | os.PathLike[str],
    image_tag: str,
    nocache: bool = False,
    quiet: bool = False,
    buildargs: Optional[Mapping[str, str]] = None,
    *,
    runtime: str = "docker",
    env_type: EnvType | str | None = None,
    on_output: Optional[Callable[[str], None]] = None,
    find_links: Sequence[str | os.PathLike[str]] = (),
    server: str = "python",
) -> str:
    """Build the image for the environment in ``env_path`` and tag it ``image_tag``.

    Progress goes to stderr: a status line on a terminal, plain lines
    otherwise (never raw terminal codes).

    :param env_path: directory with ``env.py`` (and optionally a Dockerfile,
        ``requirements.txt``, and ``wheels/`` to install them from without an index).
    :param image_tag: ``name[:tag]`` of the final image.
    :param nocache: rebuild every layer (and ignore the content-hash cache).
    :param quiet: print no build output.
    :param buildargs: ``ARG`` values for the user's Dockerfile.
    :param runtime: the runtime that builds (``"docker"``, ``"podman"``, ...).
    :param env_type: override the detected type (``"function_based"``/``"http_based"``).
    :param on_output: receive each output line (without terminal codes) instead.
    :param find_links: more directories of wheels to install requirements.txt from
        (environments without a Dockerfile), as ``wheels/``.
    :param server: the in-image server, by name (``python``: Rayfine's own; plugins add more).
    :return: the id of the final image.
    :raises ImageBuildError: the build failed; the message says the likely cause
        (e.g. no package index reachable) and the fix when the output tells.
    :raises UnknownServerError: no installed plugin provides ``server``.
    """
    info = inspect_env_dir(env_path)
    repo, tag = split_tag(image_tag)
    job = _job(info, f"{repo}:{tag}", buildargs, runtime, env_type, find_links, nocache, server)
    with _output(job.image, info, quiet, on_output) as emit:
        job.emit = emit
        digest = job.content_hash(with_code=True)
        if not nocache and _existing_hash(job.rt, job.image) == digest:
            if emit:
                emit(f"rayfine: {job.image} is up to date (content hash {digest[:12]})")
            return job.rt.image_id(job.image)
        return job.build(digest, with_code=True)


def build_dev_image(
    env_path: str | os.PathLike[str],
    runtime: str = "docker",
    *,
    nocache: bool = False,
    quiet: bool = False,
    buildargs: Optional[Mapping[str, str]] = None,
    on_output: Optional[Callable[[str], None]] = None,
    find_links: Sequence[str | os.PathLike[str]] = (),
    server: str = "python",
) -> str:
    """Build (or reuse) the image dev mode runs ``env_path`` in, and return its tag.

    It is the environment's image without its code: the dependencies
    (requirements.txt, wheels/, or the environment's own Dockerfile) and the
    server.  Its content hash covers the dependencies only, so editing the code
    never rebuilds it; ``load_env(tag, dev=env_path)`` mounts the code.  It
    shares its cached layers with :func:`build_image_from_env`'s image.

    :return: the tag, ``rayfine-dev/<directory name>:<hash of its path>``.
    """
    info = inspect_env_dir(env_path)
    if info.env_type is not EnvType.FUNCTION_BASED:
        raise ValidationError(
            f"{str(info.path)!r} is an http-based environment; dev mode runs function-based"
            " ones (Rayfine's server reloads env.py). Run your app with its own reloader."
        )
    image = dev_tag(info.path)
    job = _job(info, image, buildargs, runtime, None, find_links, nocache, server)
    with _output(image, info, quiet, on_output) as emit:
        job.emit = emit
        digest = job.content_hash(with_code=False)
        if nocache or _existing_hash(job.rt, image) != digest:
            job.build(digest, with_code=False)
        elif emit:
            emit(f"rayfine: {image} is up to date (dependencies unchanged)")
    return image


def dev_tag(env_dir: Path) -> str:
    """The dev image's tag for ``env_dir``: one per directory, whatever its name."""
    name = re.sub(r"[^a-z0-9_.-]", "-", env_dir.name.lower()).strip("-._") or "env"
    key = hashlib.sha256(str(env_dir.resolve()).encode()).hexdigest()[:12]
    return f"rayfine-dev/{name[:60]}:{key}"


def dependency_inputs(env_dir: Path) -> Callable[[Path], bool]:
    """Tells whether a changed file of ``env_dir`` changes its dev image (else it is code)."""
    info = inspect_env_dir(env_dir)
    if info.dockerfile is not None:
        return lambda path: path.suffix != ".py"
    deps = find_dependencies(info.path)
    names = {info.path / name for name in deps.files}
    wheels = info.path / dependencies.WHEELS

    def matters(path: Path) -> bool:
        return (
            path in names
            or wheels in path.parents
            or path.name in ("Dockerfile", "requirements.txt")
        )

    return matters


@contextlib.contextmanager
def _output(
    image: str, info: EnvInfo, quiet: bool, on_output: Optional[Callable[[str], None]]
) -> Iterator[Emit]:
    """Where the build's lines go: nowhere, the caller's callback, or stderr for people."""
    if quiet:
        yield None
        return
    if on_output is not None:
        yield cleaned(on_output)
        return
    started = time.monotonic()
    with BuildOutput(f"building {image}") as out:
        out.note(f"rayfine: building {image} from {info.path} ({info.env_type.value})")
        yield out
        out.note(f"rayfine: built {image} in {time.monotonic() - started:.1f}s")


def _job(
    info: EnvInfo,
    image: str,
    buildargs: Optional[Mapping[str, str]],
    runtime: str,
    env_type: EnvType | str | None,
    find_links: Sequence[str | os.PathLike[str]],
    nocache: bool,
    server: str,
) -> _Job:
    args = _check_buildargs(buildargs)
    args.setdefault("RAYFINE_BASE_IMAGE", base_image())
    kind = EnvType(env_type) if env_type else info.env_type
    if find_links and (info.dockerfile is not None or kind is EnvType.HTTP_BASED):
        raise ValidationError(
            "find_links is for environments without a Dockerfile: a Dockerfile installs its own"
            " dependencies (COPY a wheels/ directory and pip install --no-index --find-links)."
        )
    deps = find_dependencies(info.path, [Path(p) for p in find_links])
    spec = get_manager().server(server)
    return _Job(get_runtime(runtime), info, kind, deps, image, args, nocache, spec)


def _check_buildargs(buildargs: Optional[Mapping[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (buildargs or {}).items():
        if not isinstance(key, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            raise ValidationError(f"Invalid build arg name {key!r}: use letters, digits and '_'.")
        out[key] = str(value)
    return out


class _Job:
    """One image to build from one environment directory."""

    def __init__(
        self,
        rt: Runtime,
        info: EnvInfo,
        kind: EnvType,
        deps: Dependencies,
        image: str,
        args: dict[str, str],
        nocache: bool,
        server: ServerSpec,
    ) -> None:
        self.rt, self.info, self.kind, self.deps = rt, info, kind, deps
        self.image, self.args, self.nocache, self.server = image, args, nocache, server
        self.emit: Emit = None

    def build(self, digest: str, with_code: bool) -> str:
        """Build, and on failure say the likely cause (see :mod:`.diagnose`)."""
        try:
            if self.kind is EnvType.HTTP_BASED:
                return self._build_http(digest)
            if self.info.dockerfile is not None:
                return self._build_on_user_dockerfile(digest, with_code)
            return self._build_default(digest, with_code)
        except ImageBuildError as exc:
            explained = explain(exc, self.info.path, bool(self.deps.wheels))
            if explained is exc:
                raise
            raise explained from exc

    def _run(self, request: BuildRequest) -> str:
        get_manager().modify("rayfine_build", request=request, runtime=self.rt.name)
        return self.rt.build(request)

    def _request(self, context: Path, image: str, args: Mapping[str, str]) -> BuildRequest:
        return BuildRequest(context, "Dockerfile", image, dict(args), {}, self.nocache, self.emit)

    # -- http-based --------------------------------------------------------------------
    def _build_http(self, digest: str) -> str:
        """The app's own Dockerfile, then the server in front of its command (proxy mode)."""
        info = self.info
        if info.dockerfile is None:
            raise ValidationError(
                f"HTTP-based environment {str(info.path)!r} needs a Dockerfile whose CMD runs the"
                ' app (e.g. CMD ["uvicorn", "env:app", "--host", "0.0.0.0", "--port", "8000"]).'
            )
        text = info.dockerfile.read_text(errors="replace")
        command = layer.app_command(text)
        base = f"{self.image}-base"
        with tempfile.TemporaryDirectory(prefix="rayfine-build-") as tmp:
            context = info.path
            if OFFLINE_WHEELS_DIR in text:
                context = build_context.stage(info.path, Path(tmp) / "context")
                _stage_offline_wheels(context / OFFLINE_WHEELS_DIR, self.emit)
            self._run(self._request(context, base, self.args))
            return self._build_layer(Path(tmp) / "layer", base, digest, command, with_code=False)

    # -- function-based ----------------------------------------------------------------
    def _build_default(self, digest: str, with_code: bool) -> str:
        """One generated Dockerfile: dependencies, then the server layer, then the code."""
        if self.emit:
            for line in dependencies.describe(self.deps):
                self.emit(f"rayfine: {line}")
        with tempfile.TemporaryDirectory(prefix="rayfine-build-") as tmp:
            context = Path(tmp) / "context"
            build_context.stage(self.info.path, context / "env", frozenset({dependencies.WHEELS}))
            _stage_dependencies(self.deps, context / "deps")
            layer.stage(context, None, self.server)
            _translate_ignore_files(self.info.path, context)
            text = default_dockerfile(self.deps, digest, self.server, with_code)
            (context / "Dockerfile").write_text(text)
            return self._run(self._request(context, self.image, self.args))

    def _build_on_user_dockerfile(self, digest: str, with_code: bool) -> str:
        """The environment's Dockerfile becomes ``<image>-base``; the server goes on top."""
        base = f"{self.image}-base"
        self._run(self._request(self.info.path, base, self.args))
        with tempfile.TemporaryDirectory(prefix="rayfine-build-") as tmp:
            return self._build_layer(Path(tmp) / "layer", base, digest, None, with_code)

    def _build_layer(
        self,
        context: Path,
        base: str,
        digest: str,
        app_command: Optional[list[str]],
        with_code: bool,
    ) -> str:
        env_py = self.info.path / "env.py" if with_code else None  # walk() vetted any link
        layer.stage(context, env_py, self.server)
        kind = EnvType.HTTP_BASED if app_command is not None else EnvType.FUNCTION_BASED
        code = layer.ENV_PY_COPY if with_code else None
        text = layer.dockerfile(base, digest, kind, app_command, self.server, code)
        (context / "Dockerfile").write_text(text)
        return self._run(self._request(context, self.image, {}))

    # -- what the image depends on -------------------------------------------------------
    def content_hash(self, with_code: bool) -> str:
        """Hash everything the image depends on that Rayfine can see.

        ``with_code=False`` (dev images): the dependencies only, so that editing
        the code never makes a new dev image; with a Dockerfile of its own, that is
        every file of the directory but ``*.py`` (the Dockerfile may copy any of them).
        """
        h = hashlib.sha256(f"{self.kind.value} code={with_code}".encode())
        if with_code:
            build_context.digest(self.info.path, h)  # refuses links out of the directory
        elif self.info.dockerfile is not None:
            build_context.digest(self.info.path, h, lambda path: path.suffix != ".py")
        else:
            for name in self.deps.files:
                h.update(name.encode() + b"\0" + (self.info.path / name).read_bytes())
        for wheel in self.deps.wheels:  # find_links wheels are inputs too
            h.update(wheel.name.encode() + b"\0" + _file_digest(wheel))
        layer.digest(self.server, h)  # the injected server is part of every image
        h.update(resources.files("rayfine_core.image").joinpath("install_wheels.py").read_bytes())
        # How the image is built is an input too.
        h.update(default_dockerfile(self.deps, "", self.server, with_code).encode())
        h.update(layer.dockerfile("", "", self.kind, ["app"], self.server, None).encode())
        h.update(repr(sorted(self.args.items())).encode())
        return h.hexdigest()


def _file_digest(path: Path) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            h.update(block)
    return h.digest()


def _existing_hash(rt: Runtime, image: str) -> Optional[str]:
    try:
        return rt.image_labels(image).get(labels.CONTENT_HASH)
    except ImageNotFoundError:
        return None


# -- build contexts ----------------------------------------------------------------------------


def _stage_offline_wheels(dest: Path, emit: Emit) -> None:
    """Put the pinned server wheels and their installer in the build context.

    A Dockerfile that mentions ``.rayfine/`` gets them, so an http-based app can
    install its server offline:
    ``RUN python3 .rayfine/install_wheels.py .rayfine/wheels /opt/site``.
    """
    build_context.clear(dest)
    shutil.copytree(
        ensure_wheels(emit), dest / "wheels", ignore=shutil.ignore_patterns(".complete")
    )
    (dest / "install_wheels.py").write_bytes(
        resources.files("rayfine_core.image").joinpath("install_wheels.py").read_bytes()
    )


def _stage_dependencies(deps: Dependencies, dest: Path) -> None:
    """The requirements files (at their relative paths) and the wheels, under ``dest``."""
    dest.mkdir(parents=True)
    for name in deps.files:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(deps.root / name, target)
    if deps.wheels:
        (dest / dependencies.WHEELS).mkdir()
        for wheel in deps.wheels:
            shutil.copyfile(wheel, dest / dependencies.WHEELS / wheel.name)


def _translate_ignore_files(env_dir: Path, context: Path) -> None:
    """The directory's ``.dockerignore`` keeps applying to it, now that it sits under ``env/``."""
    for name in _IGNORE_FILES:
        source = env_dir / name
        if not source.is_file() or source.is_symlink():
            continue
        lines = []
        for raw in source.read_text(errors="replace").splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negate, line = (line.startswith("!"), line.lstrip("!").lstrip("/"))
            lines.append(("!" if negate else "") + "env/" + line)
        (context / name).write_text("\n".join(lines) + "\n")


# -- Dockerfiles -------------------------------------------------------------------------------


def default_dockerfile(
    deps: Dependencies, digest: str, server: ServerSpec, with_code: bool = True
) -> str:
    """The Dockerfile of an environment without one (see the module docstring).

    The code is copied last, after every step that does not depend on it, so an
    edit reuses every cached layer but the copy and the label.  ``with_code=False``
    gives the dev image: the same layers, without the code (dev mode mounts it).
    """
    lines = [
        "# Generated by Rayfine for an environment without a Dockerfile.",
        "ARG RAYFINE_BASE_IMAGE",
        "FROM ${RAYFINE_BASE_IMAGE}",
        "WORKDIR /app",
    ]
    code: Optional[str] = "COPY env /app"
    if deps.anything and deps.separable:
        install = dependencies.pip_install_command(deps, "/tmp/rayfine-deps", "/tmp/rayfine-deps")
        lines += ["COPY deps /tmp/rayfine-deps", f"RUN {install} && rm -rf /tmp/rayfine-deps"]
    elif deps.anything:  # requirements name local paths: the code must be there first
        install = dependencies.pip_install_command(deps, "/app", "/tmp/rayfine-deps")
        lines += ["COPY deps /tmp/rayfine-deps", "COPY env /app", f"RUN {install}"]
        code = None
    lines += layer.instructions(
        digest, EnvType.FUNCTION_BASED, None, server, code if with_code else None
    )
    return "\n".join(lines) + "\n"
