"""Small helpers shared by the command modules: options, parsing, output."""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from .. import errors
from ..plugins.manager import available_runtimes, get_runtime
from ..transport.annotations import parse

RAW = argparse.RawDescriptionHelpFormatter


PREFERRED_RUNTIMES = ("docker", "podman")
"""Tried first, in this order, when RAYFINE_RUNTIME is unset; then the others by name."""
TEST_DOUBLES = ("process",)
"""Never chosen by default: they isolate nothing."""


def default_runtime() -> str:
    """``RAYFINE_RUNTIME``, else the first installed runtime whose engine answers.

    :raises EngineUnavailableError: no installed runtime answers (the message says why each).
    """
    return os.environ.get("RAYFINE_RUNTIME") or _first_answering()


@functools.cache
def _first_answering() -> str:
    installed = available_runtimes()
    candidates = [name for name in PREFERRED_RUNTIMES if name in installed]
    candidates += sorted(n for n in installed if n not in PREFERRED_RUNTIMES + TEST_DOUBLES)
    problems = []
    for name in candidates:
        try:
            get_runtime(name).version()
        except errors.RayfineError as exc:
            problems.append(f"{name}: {str(exc).splitlines()[0]}")
            continue
        return name
    if not candidates:
        raise errors.EngineUnavailableError(
            "No container runtime is installed: pip install 'rayfine-core[docker]' (or [podman])."
        )
    raise errors.EngineUnavailableError(
        "No installed runtime answers (" + "; ".join(problems) + "). Start an engine, or pass"
        " --runtime / set RAYFINE_RUNTIME; `rayfine doctor` says what to fix."
    )


def add_runtime_option(
    parser: argparse.ArgumentParser,
    what: str = "the runtime to use",
    default: str = "$RAYFINE_RUNTIME, else the first of docker, podman, ... that answers",
) -> None:
    parser.add_argument(
        "--runtime",
        metavar="NAME",
        default=None,
        help=f"{what} (default: {default}; `rayfine plugins` lists them)",
    )


def add_env_options(parser: argparse.ArgumentParser) -> None:
    """``--env K=V`` and ``--env-file FILE`` (both repeatable): the container's variables."""
    parser.add_argument(
        "--env",
        "-e",
        metavar="K=V",
        action="append",
        type=key_value,
        default=[],
        help="environment variable for the container; a bare K takes this shell's value (repeatable)",
    )
    parser.add_argument(
        "--env-file",
        metavar="FILE",
        type=Path,
        action="append",
        default=[],
        help="read K=V lines from FILE (# comments; values taken literally, like docker)",
    )


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def status(message: str) -> None:
    """Progress and notes go to stderr, so stdout stays parseable."""
    print(message, file=sys.stderr, flush=True)


def print_json(data: Any, compact: bool = False) -> None:
    if compact:
        print(json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str))
    else:
        print(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


def key_value(text: str) -> tuple[str, Optional[str]]:
    """argparse type for ``K=V`` (or a bare ``K``: the caller decides what that means)."""
    key, sep, value = text.partition("=")
    if not key or not (key[0].isalpha() or key[0] == "_") or not key.replace("_", "a").isalnum():
        shown = f"name {key!r}" if sep else "a bare word"  # never echo what may be a secret
        raise argparse.ArgumentTypeError(
            f"expected NAME=VALUE with NAME made of letters, digits and '_', got {shown}"
            " (value not shown)"
        )
    return key, (value if sep else None)


def from_host_env(pairs: Sequence[tuple[str, Optional[str]]], what: str) -> dict[str, str]:
    """Resolve bare ``K`` entries from this process's environment, like ``docker run -e K``."""
    out: dict[str, str] = {}
    for key, value in pairs:
        if value is None:
            if key not in os.environ:
                raise errors.ValidationError(
                    f"{what} {key} has no value and is not set in this shell; use {key}=VALUE."
                )
            value = os.environ[key]
        out[key] = value
    return out


def env_file_vars(files: list[Path]) -> dict[str, str]:
    """Variables from ``--env-file`` files: ``K=V`` lines, ``#`` comments, values taken literally."""
    out: dict[str, str] = {}
    for path in files:
        try:
            text = path.read_text()
        except OSError as exc:
            raise errors.ValidationError(
                f"Cannot read --env-file {str(path)!r}: {exc.strerror}."
            ) from None
        pairs = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                pairs.append(key_value(line.strip()))
            except argparse.ArgumentTypeError:
                raise errors.ValidationError(
                    f"{path}:{number}: expected NAME=VALUE (value not shown)."
                ) from None
        out.update(from_host_env(pairs, f"In {path}, variable"))
    return out


def json_arg(text: str) -> tuple[str, str]:
    """argparse type for ``--arg k=v``: the name is checked; the value is read later, by
    :func:`typed_value`, once the parameter's annotation is known."""
    key, sep, raw = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(
            f"expected NAME=VALUE with NAME a Python identifier, got {text!r}"
        )
    return key, raw


def typed_value(raw: str, annotation: Optional[str]) -> Any:
    """``--arg`` text as the parameter wants it: the JSON value if it fits the annotation, else
    the text itself if a string fits (``--arg action=12`` for ``action: str`` is ``"12"``), else
    the JSON value or the text, for the method's own check to judge."""
    kind = parse(annotation)
    try:
        value = json.loads(raw)
    except ValueError:
        return raw
    if kind.name == "any" or kind.accepts(value) or not kind.accepts(raw):
        return value
    return raw


def json_object(text: str) -> dict[str, Any]:
    """argparse type for ``--args-json``."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            "must be a JSON object of keyword arguments, e.g. '{\"n\": 3}'"
        )
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return value


def age(created: Optional[float], now: Optional[float] = None) -> str:
    if not created:
        return "-"
    seconds = max(0, int((now or time.time()) - created))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
