"""Private run directories: the host end of ``/run/rayfine`` (token file, Unix socket).

All of them live in one root that only this user can enter:
``$XDG_RUNTIME_DIR/rayfine`` when that is set, else ``$TMPDIR/rayfine-<uid>``.
Another local user may have created that name first (``/tmp`` is shared),
so before every use the root is checked: a real directory (not a link),
owned by this user, mode 0700.  Anything else is refused with what to do,
never used: a socket there would let its owner read every call.

Each environment gets a fresh directory in the root, writable by the
container's user (it creates the socket there); the root's mode keeps
everyone else out.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Optional

from ..errors import ValidationError
from ..runtime import labels
from ..runtime.types import SOCKET_NAME, TOKEN_NAME, ContainerRecord

MAX_SOCKET_PATH = 107
"""Longest Unix socket path Linux accepts (sun_path is 108 bytes with the NUL)."""


def root() -> Path:
    """The checked private root (created on first use)."""
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    if runtime_dir and Path(runtime_dir).is_dir():
        path = Path(runtime_dir) / "rayfine"
    else:
        path = Path(tempfile.gettempdir()) / f"rayfine-{os.getuid()}"
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    _check_private(path)
    return path


def _check_private(path: Path) -> None:
    info = os.lstat(path)
    problem = None
    if not stat.S_ISDIR(info.st_mode):
        problem = "is not a directory (a link or a file)"
    elif info.st_uid != os.getuid():
        problem = f"belongs to uid {info.st_uid}, not to you (uid {os.getuid()})"
    elif info.st_mode & 0o077:
        problem = f"has mode {stat.S_IMODE(info.st_mode):04o}; it must be 0700"
    if problem:
        raise ValidationError(
            f"Rayfine's private directory {path} {problem}, so another user could read or"
            " answer your calls. Remove it (or fix it: chmod 700, owned by you), or set"
            " XDG_RUNTIME_DIR or TMPDIR to a directory only you can write."
        )


def create(env_id: str) -> Path:
    """A new, empty run directory for ``env_id`` (refused if the name is taken)."""
    base = root()
    path = base / env_id
    socket_path = path / SOCKET_NAME
    if len(os.fsencode(socket_path)) > MAX_SOCKET_PATH:
        raise ValidationError(
            f"The socket path {socket_path} is {len(os.fsencode(socket_path))} bytes, longer"
            f" than the {MAX_SOCKET_PATH} a Unix socket may have. Set XDG_RUNTIME_DIR or TMPDIR"
            " to a shorter directory, or pass transport='tcp'."
        )
    os.mkdir(path, 0o700)
    # The container's user (not this user) creates the socket here; the root keeps others out.
    os.chmod(path, 0o777)
    return path


def write_token(path: Path, token: str) -> None:
    """Put the token where the server reads (and then deletes) it."""
    fd = os.open(path / TOKEN_NAME, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, token.encode())
        os.fchmod(fd, 0o444)  # readable by the container's user; the root keeps others out
    finally:
        os.close(fd)


def remove(path: Path) -> None:
    """Remove a run directory (quietly: it may be gone already)."""
    shutil.rmtree(path, ignore_errors=True)


def forget(record: ContainerRecord) -> None:
    """Remove the run directory of a container removed by someone else's hand (reaped, stopped)."""
    path = path_of(record.labels.get(labels.ENV_ID, ""))
    if path is not None:
        remove(path)


def path_of(env_id: str) -> Optional[Path]:
    """Where the run directory of ``env_id`` is (for cleaning up after others), if it is an id."""
    if not env_id or not env_id.isalnum():  # a label, so anyone's text: never a path
        return None
    return root() / env_id
