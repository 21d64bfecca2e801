"""``rayfine init``: scaffold a new environment directory."""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path
from typing import Any

from .. import errors
from . import templates
from ._util import RAW, status

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_HTTP_PACKAGES = ("fastapi", "uvicorn", "pydantic")


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    init = sub.add_parser(
        "init",
        parents=[common],
        formatter_class=RAW,
        help="scaffold a new environment directory",
        description="Create PARENT/NAME with a working environment to start from.\n\n"
        "  function  env.py with an Actor class (standard library only: builds offline)\n"
        "  http      env.py with a FastAPI app, a Dockerfile and requirements.txt\n\n"
        "An existing directory is never overwritten (exit code 2).",
    )
    init.add_argument(
        "name", metavar="NAME", help="directory name (letters, digits, '_', '.', '-')"
    )
    init.add_argument(
        "--type",
        choices=["function", "http"],
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
        "--wheels",
        action="store_true",
        help="http only: copy FastAPI/uvicorn/pydantic wheels from Rayfine's cache into"
        " NAME/wheels, so the image builds without a package index",
    )
    init.set_defaults(func=cmd_init)


def cmd_init(args: argparse.Namespace) -> int:
    if not _NAME.match(args.name):
        raise errors.ValidationError(
            f"Invalid name {args.name!r}: use letters, digits, '_', '.', '-' (at most 63)."
        )
    if args.wheels and args.type != "http":
        raise errors.ValidationError(
            "--wheels is for --type http (function-based images get their server's wheels anyway)."
        )
    target = args.dir / args.name
    if target.exists():
        raise errors.ValidationError(
            f"{str(target)!r} already exists; choose another NAME or --dir (nothing was changed)."
        )
    if not args.dir.is_dir():
        raise errors.ValidationError(f"--dir {str(args.dir)!r} is not a directory.")
    tag = f"{re.sub(r'[^a-z0-9_.-]', '-', args.name.lower()).strip('-._') or 'env'}:latest"
    files = _files(args.type, args.name, tag)
    target.mkdir()
    try:
        for relative, text in files.items():
            (target / relative).write_text(text)
        if args.wheels:
            _copy_wheels(target / "wheels")
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)  # no half-made directory blocks a retry
        raise
    status(f"rayfine: created {target} ({args.type}-based): {', '.join(sorted(files))}")
    status(
        f"rayfine: next: rayfine build {target} -t {tag} && rayfine run {tag} --name {args.name}"
    )
    print(target)
    return 0


def _files(kind: str, name: str, tag: str) -> dict[str, str]:
    fill = {"name": name, "tag": tag}
    if kind == "function":
        return {
            "env.py": templates.FUNCTION_ENV.format(**fill),
            "README.md": templates.FUNCTION_README.format(**fill),
        }
    return {
        "env.py": templates.HTTP_ENV.format(**fill),
        "Dockerfile": templates.HTTP_DOCKERFILE.format(**fill),
        "requirements.txt": _http_requirements(),
        "README.md": templates.HTTP_README.format(**fill),
    }


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
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns(".complete"))
