"""The ``rayfine`` command: scaffold, build, run and call environments from a shell.

Each module holds one group of commands and an ``add_commands(subparsers,
common)`` that registers them; every command is a function ``(args) -> int``.
Expected failures are :class:`~rayfine_core.errors.RayfineError`\\ s: they
become one ``rayfine: error: ...`` line and an exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Optional, Sequence

from .. import __version__, errors
from . import build_cmd, calls, containers, dev, info, pool_cmd, scaffold, serve

EPILOG = """\
exit codes:
  0  success
  1  the operation failed: container engine, network, timeout, or the
     environment's own code raised (the message says which)
  2  usage error or bad input: unknown command or option, bad value, missing
     environment directory, unknown environment name, unknown method

environment variables:
  RAYFINE_RUNTIME      default for --runtime (default: the first installed runtime
                       that answers: docker, then podman, then others by name)
  RAYFINE_BASE_IMAGE   base image of environments without a Dockerfile
  XDG_STATE_HOME       `rayfine run` records environments in $XDG_STATE_HOME/rayfine/envs

`rayfine COMMAND --help` describes a command.  -v shows remote tracebacks and
container logs along with errors.
"""

_GROUPS = (scaffold, build_cmd, dev, containers, calls, pool_cmd, info, serve)
_BAD_INPUT = (errors.ValidationError, errors.MethodNotFoundError, errors.InvalidArgumentsError)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show remote tracebacks, container logs and debug messages",
    )
    parser = argparse.ArgumentParser(
        prog="rayfine",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
        description="Run environments (env.py actors or FastAPI apps) in containers and call them.",
    )
    parser.add_argument("--version", action="version", version=f"rayfine {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show remote tracebacks, container logs and debug messages",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for group in _GROUPS:
        group.add_commands(sub, common)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``) and return its exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors (argparse exits 2)
        return exc.code if isinstance(exc.code, int) else 2
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    if args.verbose:
        logging.basicConfig(format="rayfine: %(message)s")
        logging.getLogger("rayfine").setLevel(logging.DEBUG)
    try:
        return int(args.func(args) or 0)
    except errors.RayfineError as exc:
        _report(exc, args.verbose)
        return 2 if isinstance(exc, _BAD_INPUT) else 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except BrokenPipeError:  # `rayfine logs NAME | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _report(exc: errors.RayfineError, verbose: bool) -> None:
    text = str(exc).strip() or type(exc).__name__
    first, _, rest = text.partition("\n")
    print(f"rayfine: error: {first}", file=sys.stderr)
    if verbose and rest:
        print(rest, file=sys.stderr)
