"""``rayfine init`` and ``rayfine wheels``: scaffold an environment directory, fill its wheels/."""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path
from typing import Any

from .. import errors
from ..build.builder import base_image
from ..build.env_wheels import download_wheels
from . import templates
from ._util import RAW, status

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_HTTP_PACKAGES = ("fastapi", "uvicorn", "pydantic")
_REQUIREMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?([<>=!~]=?[^\s;]+)?$")


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    init = sub.add_parser(
        "init",
        parents=[common],
        formatter_class=RAW,
        help="scaffold a new environment directory",
        description="Create PARENT/NAME with a working environment to start from.\n\n"
        "  function  env.py with an Actor class: one-shot evaluate() (standard library only)\n"
        "  episode   env.py with a multi-turn episode: reset(seed), step(action), score()\n"
        "  http      env.py with a FastAPI app, a Dockerfile and requirements.txt\n\n"
        "An existing directory is never overwritten (exit code 2).",
    )
    init.add_argument(
        "name", metavar="NAME", help="directory name (letters, digits, '_', '.', '-')"
    )
    init.add_argument(
        "--type",
        choices=["function", "episode", "http"],
        default="function",
        help="kind of environment (default: function)",
    )
    init.add_argument(
        "--dir",
        metavar="PARENT",
        type=Path,
        default=Path("."),
        help="where to create NAME (default: .)",
    )
    init.add_argument(
        "--requires",
        metavar="PKG",
        action="append",
        default=[],
        help="a package env.py needs, written to requirements.txt (repeatable)",
    )
    init.add_argument(
        "--wheels",
        action="store_true",
        help="make the image build without a package index: fill NAME/wheels with the wheels of"
        " requirements.txt (downloaded on this host; for http, FastAPI/uvicorn/pydantic come"
        " from Rayfine's cache)",
    )
    init.set_defaults(func=cmd_init)

    wheels = sub.add_parser(
        "wheels",
        parents=[common],
        formatter_class=RAW,
        help="download an environment's requirements into its wheels/ directory",
        description="Download ENV_DIR/requirements.txt and every dependency as wheels into\n"
        "ENV_DIR/wheels, for the image's Python (from RAYFINE_BASE_IMAGE's name, e.g.\n"
        "python:3.11-slim -> 3.11; else 3.9-3.13) on manylinux. The build then installs\n"
        "them without a package index. Runs `pip download` on this host.",
    )
    wheels.add_argument("env_dir", metavar="ENV_DIR", help="directory holding requirements.txt")
    wheels.add_argument(
        "--python",
        metavar="X.Y",
        action="append",
        default=[],
        help="the image's Python version (repeatable; default: see above)",
    )
    wheels.set_defaults(func=cmd_wheels)


def cmd_init(args: argparse.Namespace) -> int:
    if not _NAME.match(args.name):
        raise errors.ValidationError(
            f"Invalid name {args.name!r}: use letters, digits, '_', '.', '-' (at most 63)."
        )
    for package in args.requires:
        if not _REQUIREMENT.match(package):
            raise errors.ValidationError(
                f"--requires {package!r} is not a requirement such as 'sympy' or 'sympy==1.14.0'."
            )
    target = args.dir / args.name
    if target.exists():
        raise errors.ValidationError(
            f"{str(target)!r} already exists; choose another NAME or --dir (nothing was changed)."
        )
    if not args.dir.is_dir():
        raise errors.ValidationError(f"--dir {str(args.dir)!r} is not a directory.")
    tag = f"{re.sub(r'[^a-z0-9_.-]', '-', args.name.lower()).strip('-._') or 'env'}:latest"
    files = _files(args.type, args.name, tag, args.requires, args.wheels)
    target.mkdir()
    try:
        for relative, text in files.items():
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            (target / relative).write_text(text)
        if args.wheels:
            if args.type == "http":
                _copy_wheels(target / "wheels")
            if args.requires:
                download_wheels(target, base_image=base_image(), emit=status)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)  # no half-made directory blocks a retry
        raise
    kind = "http-based" if args.type == "http" else "function-based"
    status(f"rayfine: created {target} ({kind}): {', '.join(sorted(files))}")
    status(f"rayfine: next: rayfine dev {target}   (or: rayfine build {target} -t {tag})")
    print(target)
    return 0


def cmd_wheels(args: argparse.Namespace) -> int:
    root = Path(args.env_dir).expanduser()
    if not root.is_dir():
        raise errors.ValidationError(f"{str(root)!r} is not a directory.")
    for version in args.python:
        if not re.fullmatch(r"3\.\d+", version):
            raise errors.ValidationError(f"--python {version!r}: use a version such as 3.11.")
    found = download_wheels(root, args.python, base_image(), status)
    status(f"rayfine: {len(found)} wheels in {root / 'wheels'}; the build installs from them")
    for wheel in found:
        print(wheel)
    return 0


def _files(kind: str, name: str, tag: str, requires: list[str], wheels: bool) -> dict[str, str]:
    fill = {"name": name, "tag": tag}
    if kind == "http":
        files = {
            "env.py": templates.HTTP_ENV.format(**fill),
            "Dockerfile": templates.HTTP_DOCKERFILE.format(**fill),
            "requirements.txt": _http_requirements() + "".join(f"{r}\n" for r in requires),
            "README.md": templates.HTTP_README.format(**fill),
        }
    elif kind == "episode":
        files = {
            "env.py": templates.EPISODE_ENV.format(**fill),
            "README.md": templates.EPISODE_README.format(**fill),
        }
    else:
        files = {
            "env.py": templates.FUNCTION_ENV.format(**fill),
            "README.md": templates.FUNCTION_README.format(**fill),
        }
    if kind != "http" and (requires or wheels):
        lines = "".join(f"{r}\n" for r in requires)
        files["requirements.txt"] = templates.FUNCTION_REQUIREMENTS + lines
    if wheels:
        files["wheels/.gitignore"] = templates.WHEELS_GITIGNORE
    return files


def _http_requirements() -> str:
    """FastAPI, uvicorn and pydantic at the versions Rayfine's server pins, so its wheel cache fits."""
    pins = dict.fromkeys(_HTTP_PACKAGES, "")
    try:
        from ..build.wheelhouse import http_app_lock

        for line in http_app_lock().splitlines():
            name, sep, version = line.strip().partition("==")
            if sep and name.lower() in pins:
                pins[name.lower()] = f"=={version}"
    except OSError:
        pass  # rayfine-server not installed: unpinned is fine
    return (
        "# Installed into /opt/site by the Dockerfile; add your own dependencies below.\n"
        + "".join(f"{name}{version}\n" for name, version in pins.items())
    )


def _copy_wheels(dest: Path) -> None:
    from ..build.wheelhouse import ensure_wheels

    source = ensure_wheels(status)
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns(".complete"), dirs_exist_ok=True)
