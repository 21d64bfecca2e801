"""Errors only remote mode raises, each a subclass of the core's so callers can catch either.

The gateway answers every refusal in the common error shape
(``{"error": {"kind", "type", "message", ...}}``); :data:`KINDS` says which
exception each kind becomes on the client, and which HTTP status the gateway
answers it with.
"""

from __future__ import annotations

from rayfine_core import errors


class GatewayAuthError(errors.RuntimeFailure, PermissionError):
    """The gateway refused the client token (missing, unknown or revoked)."""


class PolicyError(errors.ValidationError, PermissionError):
    """The gateway's policy for this token forbids what was asked (an image, an option, builds)."""


class QuotaExceededError(errors.CapacityError):
    """This token has as many environments, or started as many this minute, as its quota allows."""


KINDS: dict[str, tuple[int, type[errors.RayfineError]]] = {
    "unauthorized": (401, GatewayAuthError),
    "forbidden": (403, PolicyError),
    "quota_exceeded": (429, QuotaExceededError),
    "bad_request": (400, errors.ValidationError),
    "invalid": (422, errors.ValidationError),
    "unknown_environment": (404, errors.UnknownEnvironmentError),
    "image_not_found": (404, errors.ImageNotFoundError),
    "env_load_failed": (500, errors.EnvLoadError),
    "start_failed": (500, errors.StartError),
    "build_failed": (500, errors.ImageBuildError),
    "engine_unavailable": (503, errors.EngineUnavailableError),
    "runtime_failure": (500, errors.RuntimeFailure),
    "internal_error": (500, errors.RuntimeFailure),
}
"""Error kind -> (HTTP status the gateway answers, exception the client raises)."""


def kind_of(exc: BaseException) -> str:
    """The kind under which the gateway reports ``exc`` (most specific class first)."""
    for kind in (
        "unauthorized",
        "forbidden",
        "quota_exceeded",
        "image_not_found",
        "env_load_failed",
        "start_failed",
        "build_failed",
        "engine_unavailable",
        "invalid",
        "runtime_failure",
    ):
        if isinstance(exc, KINDS[kind][1]):
            return kind
    return "internal_error"
