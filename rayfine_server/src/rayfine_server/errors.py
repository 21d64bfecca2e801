"""The error kinds the server reports, and the one JSON shape they travel in.

Every failure answers ``{"error": {"kind", "type", "message", "traceback"}}``
so the client can map ``kind`` onto its own exception classes without parsing
messages.
"""

from __future__ import annotations

import json
import os
import traceback as tb
from types import TracebackType
from typing import Optional, Tuple

from .responses import Response

BAD_REQUEST = "bad_request"
UNAUTHORIZED = "unauthorized"
METHOD_NOT_FOUND = "method_not_found"
INVALID_ARGUMENTS = "invalid_arguments"
REMOTE_EXCEPTION = "remote_exception"
ACTOR_INIT_FAILED = "actor_init_failed"
NOT_SERIALIZABLE = "not_serializable"
TIMEOUT = "timeout"
TOO_LARGE = "too_large"
SESSION_CAPACITY = "session_capacity"
UNKNOWN_SESSION = "unknown_session"
SESSION_CLOSED = "session_closed"
OVERLOADED = "overloaded"
APP_STARTING = "app_starting"
ENV_LOAD_FAILED = "env_load_failed"
INTERNAL_ERROR = "internal_error"

# Frames from files under this directory are the server's, not the user's.
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep

# The client keys on ``kind``; the status code is for humans, proxies and logs.
STATUS_BY_KIND = {
    BAD_REQUEST: 400,
    UNAUTHORIZED: 401,
    METHOD_NOT_FOUND: 404,
    INVALID_ARGUMENTS: 422,
    TOO_LARGE: 413,
    SESSION_CAPACITY: 429,
    UNKNOWN_SESSION: 404,
    SESSION_CLOSED: 410,
    REMOTE_EXCEPTION: 500,
    ACTOR_INIT_FAILED: 500,
    NOT_SERIALIZABLE: 500,
    INTERNAL_ERROR: 500,
    ENV_LOAD_FAILED: 503,
    OVERLOADED: 503,
    APP_STARTING: 503,
    TIMEOUT: 504,
}


class CallError(Exception):
    """A failure to report to the client as an error body.

    :param kind: one of the kind constants in this module.
    :param message: what went wrong and, where possible, what to do.
    :param type_name: the exception type name; for the server's own refusals it
        defaults to the kind in CamelCase (``bad_request`` -> ``BadRequest``).
    :param traceback: formatted traceback of the user's code, if it raised.
    :param status: HTTP status; defaults to the kind's usual one.
    """

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        type_name: Optional[str] = None,
        traceback: Optional[str] = None,
        status: Optional[int] = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.type_name = type_name or kind.title().replace("_", "")
        self.traceback = traceback
        self.status = status or STATUS_BY_KIND.get(kind, 500)

    @classmethod
    def from_exception(cls, kind: str, exc: BaseException) -> CallError:
        """Describe an exception raised by user code, traceback and all."""
        return cls(
            kind,
            safe_str(exc),
            type_name=qualified_type_name(exc),
            traceback=format_user_traceback(exc),
        )

    def to_dict(self) -> dict:
        """The JSON body for this error."""
        return {
            "error": {
                "kind": self.kind,
                "type": self.type_name,
                "message": self.message,
                "traceback": self.traceback,
            }
        }

    def to_response(self, headers: Tuple[Tuple[str, str], ...] = ()) -> Response:
        """The HTTP response for this error."""
        if self.kind == UNAUTHORIZED:
            headers = (*headers, ("www-authenticate", "Bearer"))
        body = json.dumps(self.to_dict(), ensure_ascii=True).encode()
        return Response(self.status, body, headers)


def safe_str(exc: BaseException) -> str:
    """``str(exc)``, or a placeholder when the user's ``__str__`` raises."""
    try:
        return str(exc)
    except Exception:
        return f"<{type(exc).__name__}: str() failed>"


def qualified_type_name(exc: BaseException) -> str:
    """``ValueError`` for builtins, ``package.module.MyError`` for everything else."""
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def format_user_traceback(exc: BaseException) -> str:
    """Format ``exc`` with its chain, starting at the first frame of user code.

    Leading frames of this package and of importlib are the server's plumbing;
    dropping them makes the first frame the client sees the user's own.
    """
    trace: Optional[TracebackType] = exc.__traceback__
    while trace is not None and _is_plumbing(trace.tb_frame.f_code.co_filename):
        trace = trace.tb_next
    return "".join(tb.format_exception(type(exc), exc, trace))


def _is_plumbing(filename: str) -> bool:
    """Whether a frame from ``filename`` belongs to the server or the import system."""
    return filename.startswith((_PACKAGE_DIR, "<frozen importlib"))
