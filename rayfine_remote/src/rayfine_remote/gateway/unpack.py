"""Unpacking a client's build upload without letting it write outside its scratch directory.

Only regular files, directories and symbolic links that point inside the
context are taken; absolute names, ``..``, hard links, devices and FIFOs
are refused, files are created exclusively (never through an existing
link), set-id bits are dropped, and the total size is capped.
"""

from __future__ import annotations

import json
import os
import posixpath
import tarfile
from pathlib import Path
from typing import IO, Any

from rayfine_core.errors import ValidationError

from ..upload import CONTEXT, META

_COPY = 1024 * 1024


def unpack(upload: IO[bytes], into: Path, max_bytes: int) -> tuple[dict[str, Any], Path]:
    """Extract ``upload`` under ``into``; return the build settings and the context directory.

    :raises ValidationError: the upload is not a well-formed build tar.
    """
    context = into / CONTEXT
    meta: Any = None
    total = 0
    try:
        with tarfile.open(fileobj=upload, mode="r:*") as tar:
            for member in tar:
                if member.name == META and member.isfile() and member.size < 1 << 20:
                    source = tar.extractfile(member)
                    assert source is not None
                    meta = json.loads(source.read())
                    continue
                relative = _inside(member.name)
                total += member.size
                if total > max_bytes:
                    raise ValidationError(
                        f"The build context is larger than this gateway accepts ({max_bytes} bytes)."
                    )
                _extract(tar, member, into, relative)
    except ValidationError:
        raise
    except (tarfile.TarError, OSError, ValueError) as exc:
        raise ValidationError(f"The build upload is not a readable tar: {exc}") from None
    if not isinstance(meta, dict) or not context.is_dir():
        raise ValidationError(f"The build upload has no {META} or no {CONTEXT}/ directory.")
    return meta, context


def _inside(name: str) -> str:
    normal = posixpath.normpath(name)
    if name.startswith("/") or normal == ".." or normal.startswith("../"):
        raise ValidationError(f"The build upload names a path outside its context: {name!r}.")
    if normal != CONTEXT and not normal.startswith(CONTEXT + "/"):
        raise ValidationError(f"The build upload has an unexpected entry {name!r}.")
    return normal


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, into: Path, relative: str) -> None:
    target = into / relative
    parent_fd = _open_parent(into, relative)
    name = posixpath.basename(relative)
    try:
        if member.isdir():
            try:
                os.mkdir(name, 0o755, dir_fd=parent_fd)
            except FileExistsError:
                if not target.is_dir() or target.is_symlink():
                    raise ValidationError(
                        f"{relative!r} is both a directory and something else."
                    ) from None
        elif member.isfile():
            source = tar.extractfile(member)
            assert source is not None
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
            fd = os.open(name, flags, member.mode & 0o755 | 0o600, dir_fd=parent_fd)
            with os.fdopen(fd, "wb") as out:
                while True:
                    chunk = source.read(_COPY)
                    if not chunk:
                        break
                    out.write(chunk)
        elif member.issym():
            link = posixpath.normpath(posixpath.join(posixpath.dirname(relative), member.linkname))
            if member.linkname.startswith("/") or not (
                link == CONTEXT or link.startswith(CONTEXT + "/")
            ):
                raise ValidationError(
                    f"The build upload has a link leaving its context: {relative!r}."
                )
            os.symlink(member.linkname, name, dir_fd=parent_fd)
        else:
            raise ValidationError(
                f"The build upload holds {relative!r}, neither a file, a directory nor a link."
            )
    finally:
        os.close(parent_fd)


def _open_parent(into: Path, relative: str) -> int:
    """A descriptor of the entry's parent directory, opened one level at a time without following links."""
    fd = os.open(into, os.O_RDONLY | os.O_DIRECTORY)
    for part in posixpath.dirname(relative).split("/"):
        if not part:
            continue
        try:
            child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
        except OSError:
            os.close(fd)
            raise ValidationError(
                f"The build upload puts {relative!r} under something that is not a directory."
            ) from None
        os.close(fd)
        fd = child
    return fd
