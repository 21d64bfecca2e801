"""Take the token out of the environment before any user code can see it.

``RAYFINE_TOKEN_FILE`` names a file holding the token: it is read, then
unlinked (a read-only mount, such as a Kubernetes secret volume, cannot be
unlinked; that is tolerated).  ``RAYFINE_TOKEN`` holds the token itself: it
is popped from ``os.environ`` *and* wiped from the process's initial
environment block, which ``/proc/<pid>/environ`` shows to any process of the
same user, including env.py's own subprocesses.
"""

from __future__ import annotations

import errno
import os
from collections.abc import MutableMapping
from typing import Optional

# A token file that cannot be removed: read-only or secret mounts, a bind-mounted
# single file (EBUSY), or a directory this user may not write.
_CANNOT_UNLINK = (errno.EROFS, errno.EACCES, errno.EPERM, errno.EBUSY, errno.ENOENT)


class TokenError(ValueError):
    """The token file is missing, unreadable or empty."""


def take_token(environ: MutableMapping[str, str]) -> Optional[str]:
    """The token, removed from ``environ`` (and from disk, for a token file).

    :raises TokenError: ``RAYFINE_TOKEN_FILE`` is set but holds no usable token.
    """
    path = environ.get("RAYFINE_TOKEN_FILE") or None
    from_file = _read_token_file(path) if path else None
    value = environ.get("RAYFINE_TOKEN")
    if value is not None:
        if environ is os.environ:
            wipe_initial_environment("RAYFINE_TOKEN")
        environ.pop("RAYFINE_TOKEN", None)
    return from_file or value or None


def _read_token_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            token = handle.read(64 * 1024).strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise TokenError(f"RAYFINE_TOKEN_FILE={path}: cannot read the token: {reason}") from None
    try:
        os.unlink(path)
    except OSError as exc:
        if exc.errno not in _CANNOT_UNLINK:
            message = f"RAYFINE_TOKEN_FILE={path}: cannot remove it: {exc.strerror}"
            raise TokenError(message) from None
    if not token:
        raise TokenError(f"RAYFINE_TOKEN_FILE={path} is empty")
    return token


def wipe_initial_environment(name: str) -> bool:
    """Overwrite the value of ``name`` in the C environment block with NUL bytes.

    Must run before ``os.environ`` drops the variable (which unlinks the C
    entry, losing its address).  Returns whether anything was wiped; on a C
    library without an ``environ`` symbol it does nothing.
    """
    try:
        import ctypes

        environ = ctypes.POINTER(ctypes.c_void_p).in_dll(ctypes.CDLL(None), "environ")
    except (OSError, ValueError, AttributeError):
        return False
    prefix = name.encode() + b"="
    wiped = False
    index = 0
    while True:
        address = environ[index]
        if not address:
            return wiped
        entry = ctypes.string_at(address)
        if entry.startswith(prefix):
            ctypes.memset(address + len(prefix), 0, len(entry) - len(prefix))
            wiped = True
        index += 1
