"""Enough of a Dockerfile to lay out an image as a directory: for the ``process`` test runtime.

Supported: ``FROM`` (with ``AS``; an image of the store, or anything else as
an empty root), ``ARG``, ``ENV``, ``LABEL``, ``WORKDIR``, ``COPY`` (with
``--from=stage``), ``CMD``/``ENTRYPOINT`` (exec or shell form), and
``EXPOSE``/``USER``/``HEALTHCHECK`` (ignored).  ``RUN`` is recorded and
skipped: nothing runs at build time, the host's Python and packages stand
in for whatever it would have installed.  Anything else is an error.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from ..errors import ImageBuildError


@dataclass
class Layout:
    """An image as the process runtime keeps it: a root directory and its settings."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)

    def settings(self) -> dict[str, object]:
        return {
            "env": self.env,
            "labels": self.labels,
            "workdir": self.workdir,
            "entrypoint": self.entrypoint,
            "cmd": self.cmd,
        }


Resolve = Callable[[str, Path], Optional[Layout]]
"""Copies a stored image's root to the given directory and returns its layout, or None if unknown."""


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuations joined and comments dropped."""
    joined = re.sub(r"\\[ \t]*\r?\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def build(
    text: str,
    context: Path,
    workspace: Path,
    buildargs: dict[str, str],
    resolve: Resolve,
    emit: Callable[[str], None],
) -> Layout:
    """Lay out the image ``text`` describes under ``workspace``; return its final stage."""
    args = dict(buildargs)
    stages: dict[str, Layout] = {}
    current: Optional[Layout] = None
    for number, (word, rest) in enumerate(instructions(text), 1):
        emit(f"Step {number}: {word} {rest}")
        rest = _expand(rest, {**args, **(current.env if current else {})})
        if word == "FROM":
            current = _from(rest, workspace / f"stage{number}", resolve, stages)
        elif word == "ARG":
            name, _, default = rest.partition("=")
            args.setdefault(name.strip(), default.strip().strip('"'))
        elif current is None:
            raise ImageBuildError(f"{word} before FROM in the Dockerfile")
        elif word == "ENV":
            current.env.update(_pairs(rest))
        elif word == "LABEL":
            current.labels.update(_pairs(rest))
        elif word == "WORKDIR":
            current.workdir = os.path.join(current.workdir, rest)
            _inside(current.root, current.workdir).mkdir(parents=True, exist_ok=True)
        elif word == "COPY":
            _copy(rest, context, current, stages)
        elif word in ("CMD", "ENTRYPOINT"):
            setattr(current, word.lower(), _command(rest))
        elif word == "RUN":
            emit(" ---> skipped: the process runtime runs nothing at build time")
        elif word not in ("EXPOSE", "USER", "HEALTHCHECK", "STOPSIGNAL", "VOLUME", "SHELL"):
            raise ImageBuildError(f"The process runtime cannot build a Dockerfile with {word}")
    if current is None:
        raise ImageBuildError("The Dockerfile has no FROM")
    return current


def _from(rest: str, root: Path, resolve: Resolve, stages: dict[str, Layout]) -> Layout:
    words = rest.split()
    reference, alias = words[0], (words[2] if len(words) == 3 and words[1].upper() == "AS" else "")
    if reference in stages:
        base = stages[reference]
        shutil.copytree(base.root, root, symlinks=True, copy_function=_link)
        layout = Layout(root, **json.loads(json.dumps(base.settings())))  # type: ignore[arg-type]
    else:
        layout = resolve(reference, root) or Layout(root)
        root.mkdir(parents=True, exist_ok=True)
    if alias:
        stages[alias] = layout
    return layout


def _copy(rest: str, context: Path, layout: Layout, stages: dict[str, Layout]) -> None:
    words = shlex.split(rest)
    source_root = context
    if words and words[0].startswith("--from="):
        stage = words.pop(0).split("=", 1)[1]
        if stage not in stages:
            raise ImageBuildError(f"COPY --from={stage}: no such stage")
        source_root = stages[stage].root
    *sources, dest = words
    for source in sources:
        src = _inside(source_root, source) if source_root is not context else context / source
        target = _inside(layout.root, os.path.join(layout.workdir, dest))
        if src.is_dir():
            shutil.copytree(src, target, symlinks=True, dirs_exist_ok=True, copy_function=_link)
        else:
            if dest.endswith("/") or target.is_dir():
                target = target / src.name
            target.parent.mkdir(parents=True, exist_ok=True)
            _link(str(src), str(target))


def _link(src: str, dst: str) -> None:
    """Hard-link (stored images are never written to after the build), else copy."""
    if os.path.lexists(dst):
        os.unlink(dst)
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)


def _inside(root: Path, path: str) -> Path:
    return root / os.path.normpath("/" + path).lstrip("/")


def _expand(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values.get(m.group(1) or m.group(2), ""), text)


def _pairs(text: str) -> dict[str, str]:
    words = shlex.split(text)
    if len(words) == 2 and "=" not in words[0]:
        return {words[0]: words[1]}  # ENV NAME value
    return dict(word.split("=", 1) for word in words if "=" in word)


def _command(text: str) -> list[str]:
    if text.startswith("["):
        return [str(word) for word in json.loads(text)]
    return ["/bin/sh", "-c", text]
