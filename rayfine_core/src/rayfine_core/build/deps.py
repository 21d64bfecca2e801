"""What a Dockerfile-less environment depends on: requirements files and wheels, found by reading.

The default Dockerfile installs these *before* it copies the code, so an edit
to env.py reuses the installed layer.  That only works when the requirements
can be installed from these files alone; a requirement naming a local path
(``-e .``, ``./mylib``) needs the whole directory first, and then the
dependencies are installed after the copy, as before.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

from ..errors import ValidationError

REQUIREMENTS = "requirements.txt"
WHEELS = "wheels"
_INCLUDE = re.compile(r"^\s*(-r|-c|--requirement|--constraint)(?:\s+|=)(\S+)")
_LOCAL = re.compile(r"^\s*(-e\s|--editable[\s=]|\.{1,2}[/\\]|\.$|/|file:)")


@dataclass(frozen=True)
class Dependencies:
    """The dependency inputs of one environment directory.

    :param files: requirements files (relative paths): ``requirements.txt`` and
        every file it includes with ``-r``/``-c``, in include order.
    :param wheels: every ``.whl`` to install from, local to this host: the
        directory's ``wheels/`` and the ``find_links`` directories.
    :param local_refs: requirement lines that name a local path: the code must be
        copied before installing.
    """

    root: Path
    files: tuple[str, ...]
    wheels: tuple[Path, ...]
    local_refs: tuple[str, ...]

    @property
    def anything(self) -> bool:
        return bool(self.files or self.wheels)

    @property
    def separable(self) -> bool:
        """True when the dependencies install from the requirements files and wheels alone."""
        return not self.local_refs


def find_dependencies(root: Path, find_links: Sequence[Path] = ()) -> Dependencies:
    """Read ``root/requirements.txt`` (and its includes) and list the wheels to install from.

    :raises ValidationError: an include escapes the directory or does not exist, or a
        ``find_links`` entry is not a directory.
    """
    files: list[str] = []
    local: list[str] = []
    if (root / REQUIREMENTS).is_file():
        _read(root, REQUIREMENTS, files, local)
    wheels = sorted((root / WHEELS).glob("*.whl")) if (root / WHEELS).is_dir() else []
    for directory in find_links:
        path = Path(directory).expanduser()
        if not path.is_dir():
            raise ValidationError(f"find_links entry {str(directory)!r} is not a directory.")
        wheels += sorted(path.glob("*.whl"))
    unique = {w.name: w for w in wheels}  # the env's own wheels win over find_links'
    return Dependencies(root, tuple(files), tuple(unique.values()), tuple(local))


def _read(root: Path, relative: str, files: list[str], local: list[str]) -> None:
    if relative in files:
        return
    path = (root / relative).resolve()
    if root.resolve() not in path.parents or not path.is_file():
        raise ValidationError(
            f"{relative} (included from the requirements) must be a file inside {root}."
        )
    files.append(relative)
    base = Path(relative).parent
    for line in path.read_text(errors="replace").splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        included = _INCLUDE.match(line)
        if included:
            _read(root, str(base / included.group(2)), files, local)
        elif _LOCAL.match(line):
            local.append(line)


def pip_install_command(deps: Dependencies, files_at: str, wheels_at: str) -> Optional[str]:
    """The shell command that installs ``deps``: requirements files copied to ``files_at``,
    wheels to ``wheels_at/wheels``.

    With wheels, pip never contacts an index (``--no-index``): the build is the
    same with or without a network, and a missing wheel is named, not fetched.
    """
    if not deps.anything:
        return None
    words = ["python3", "-m", "pip", "install", "--no-cache-dir", "--disable-pip-version-check"]
    words += ["--retries", "2"]
    if deps.wheels:
        words += ["--no-index", "--find-links", f"{wheels_at}/{WHEELS}"]
    targets: list[str] = ["-r", f"{files_at}/{deps.files[0]}"] if deps.files else []
    if not targets:  # wheels without requirements.txt: install every wheel given
        targets = [f"{wheels_at}/{WHEELS}/{w.name}" for w in deps.wheels]
    # Variables, not options: a pip too old to know them ignores them.
    prefix = "PIP_BREAK_SYSTEM_PACKAGES=1 PIP_ROOT_USER_ACTION=ignore "
    return prefix + " ".join(shlex.quote(w) for w in words + targets)


def describe(deps: Dependencies) -> Iterable[str]:
    """What will be installed, for the build output."""
    if deps.files:
        yield f"installing {', '.join(deps.files)}" + (
            f" offline from {len(deps.wheels)} wheels" if deps.wheels else " from the package index"
        )
    elif deps.wheels:
        yield f"installing {len(deps.wheels)} wheels from wheels/"
    if deps.local_refs:
        yield (
            f"requirements name local paths ({deps.local_refs[0]}): the code is copied before"
            " installing them, so an edit re-runs the install"
        )
