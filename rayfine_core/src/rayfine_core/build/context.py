"""An environment directory as a build context: read without leaving it, copied without aliasing.

The directory may come from someone else (an untrusted env), so nothing here
follows a symbolic link out of it or writes through one: a link whose target
resolves outside the directory is refused with its name; links inside it are
kept as links.  The copy is a real copy, so writing Rayfine's own files into
it can never change a file of the user's (hard links would).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from pathlib import Path
from typing import Callable, Iterator

from ..errors import EnvDefinitionError

IGNORED = frozenset({".git", "__pycache__", ".venv", ".mypy_cache", ".pytest_cache", ".ruff_cache"})


def walk(root: Path) -> Iterator[tuple[Path, os.stat_result]]:
    """Every entry under ``root`` (files, links, directories), sorted, never following links.

    :raises EnvDefinitionError: a link points outside ``root``, or an entry is
        a device, socket or pipe.
    """
    real_root = root.resolve()
    for directory, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if d not in IGNORED)
        here = Path(directory)
        for name in sorted(dirs) + sorted(f for f in files if not f.endswith(".pyc")):
            path = here / name
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                _check_link(path, root, real_root)
            elif not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
                raise EnvDefinitionError(
                    f"{path} is not a regular file or directory (a device, socket or pipe);"
                    " remove it from the environment directory."
                )
            yield path, info


def _check_link(path: Path, root: Path, real_root: Path) -> None:
    target = (path.parent / os.readlink(path)).resolve()
    if target != real_root and real_root not in target.parents:
        raise EnvDefinitionError(
            f"{path.relative_to(root)} is a symbolic link to {os.readlink(path)!r}, outside the"
            " environment directory; Rayfine never builds from files outside it. Copy the file"
            " in instead of linking to it."
        )


def digest(
    root: Path, into: hashlib._Hash, keep: Callable[[Path], bool] = lambda path: True
) -> None:
    """Feed every entry's relative path and content (a link: its target text) into ``into``;
    only the entries ``keep`` accepts."""
    for path, info in walk(root):
        if not keep(path):
            continue
        relative = str(path.relative_to(root)).encode()
        if stat.S_ISLNK(info.st_mode):
            into.update(b"L" + relative + b"\0" + os.readlink(path).encode() + b"\0")
        elif stat.S_ISREG(info.st_mode):
            into.update(b"F" + relative + b"\0" + path.read_bytes() + b"\0")


def stage(root: Path, dest: Path, leave_out: frozenset[str] = frozenset()) -> Path:
    """Copy ``root`` to ``dest`` (links inside it stay links), without the top-level
    entries named in ``leave_out``; return ``dest``."""
    dest.mkdir(parents=True)
    for path, info in walk(root):
        relative = path.relative_to(root)
        if relative.parts[0] in leave_out:
            continue
        target = dest / relative
        if stat.S_ISLNK(info.st_mode):
            os.symlink(os.readlink(path), target)
        elif stat.S_ISDIR(info.st_mode):
            target.mkdir()
        else:
            shutil.copyfile(path, target, follow_symlinks=False)
            os.chmod(target, stat.S_IMODE(info.st_mode))
    return dest


def clear(path: Path) -> Path:
    """Make room for a file Rayfine writes into a staged context: whatever is there goes.

    The user's directory may hold an entry of the same name (even a link);
    it is removed, never written through.
    """
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
    return path
