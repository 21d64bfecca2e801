"""``rayfine build``: build an environment directory into an image."""

from __future__ import annotations

import argparse
from typing import Any

from ..build.builder import build_image_from_env
from ..build.detect import inspect_env_dir
from ._util import RAW, add_runtime_option, default_runtime, from_host_env, key_value


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    build = sub.add_parser(
        "build",
        parents=[common],
        formatter_class=RAW,
        help="build an environment directory into an image",
        description="Build the image for ENV_DIR (env.py, and optionally a Dockerfile) and tag\n"
        "it TAG. requirements.txt is installed before the code is copied (an env.py edit\n"
        "rebuilds in seconds), from ENV_DIR/wheels when it holds wheels (`rayfine wheels`).\n"
        "Build output goes to stderr; the image id is printed on stdout at the end.",
    )
    build.add_argument("env_dir", metavar="ENV_DIR", help="directory holding env.py")
    build.add_argument(
        "-t", "--tag", required=True, metavar="TAG", help="image name[:tag], e.g. demo:latest"
    )
    add_runtime_option(build)
    build.add_argument(
        "--no-cache", action="store_true", help="rebuild every layer, even if nothing changed"
    )
    build.add_argument(
        "--build-arg",
        metavar="K=V",
        action="append",
        type=key_value,
        default=[],
        help="ARG value for the Dockerfile; a bare K takes this shell's value (repeatable)",
    )
    build.add_argument(
        "--find-links",
        metavar="DIR",
        action="append",
        default=[],
        help="more wheels to install requirements.txt from, like ENV_DIR/wheels (repeatable)",
    )
    build.add_argument("--quiet", "-q", action="store_true", help="print only the image id")
    build.add_argument(
        "--env-type", choices=["function_based", "http_based"], help="override the detected type"
    )
    build.set_defaults(func=cmd_build)


def cmd_build(args: argparse.Namespace) -> int:
    info = inspect_env_dir(args.env_dir)  # a bad directory fails before the engine is touched
    runtime = args.runtime or default_runtime()
    image = build_image_from_env(  # progress on stderr: a status line on a terminal
        info.path,
        args.tag,
        nocache=args.no_cache,
        quiet=args.quiet,
        buildargs=from_host_env(args.build_arg, "Build arg"),
        runtime=runtime,
        env_type=args.env_type,
        find_links=args.find_links,
    )
    print(image)
    return 0
