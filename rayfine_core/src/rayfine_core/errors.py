"""Every error Rayfine raises, in one hierarchy.

Callers can tell apart bad input (:class:`ValidationError`), the container
engine failing (:class:`RuntimeFailure`), the network between client and
container failing (:class:`TransportError`), time running out
(:class:`RayfineTimeout`), and the environment's own code raising
(:class:`RemoteError`).  Every message says what to do next.
"""

from __future__ import annotations

from typing import Optional, Sequence


class RayfineError(Exception):
    """Base class of every error raised by Rayfine."""


# --- bad input ---------------------------------------------------------------


class ValidationError(RayfineError, ValueError):
    """The caller passed something Rayfine cannot use; the message says how to fix it."""


class EnvDefinitionError(ValidationError):
    """An environment directory is unusable: missing, no env.py, or env.py does not parse."""


class UnknownRuntimeError(ValidationError, LookupError):
    """No runtime plugin is registered under the requested name."""

    def __init__(self, name: str, available: Sequence[str], load_errors: dict[str, str]) -> None:
        self.name = name
        self.available = list(available)
        self.load_errors = dict(load_errors)
        choices = ", ".join(sorted(available)) or "(none installed)"
        lines = [
            f"Unknown runtime {name!r}. Choose one of: {choices}.",
            f"To add it, install its plugin: pip install 'rayfine-core[{name}]'"
            f" (or the third-party distribution that provides it).",
        ]
        for plugin, error in sorted(self.load_errors.items()):
            lines.append(f"Plugin {plugin!r} failed to load: {error}")
        super().__init__("\n".join(lines))


class UnknownServerError(ValidationError, LookupError):
    """No plugin declares an in-image server of the requested name."""

    def __init__(self, name: str, available: Sequence[str], load_errors: dict[str, str]) -> None:
        self.name = name
        self.available = list(available)
        choices = ", ".join(sorted(available)) or "(none installed)"
        lines = [
            f"Unknown server {name!r}. Choose one of: {choices}.",
            "Rayfine's own server: pip install 'rayfine-core[server]' (the runtime extras bring"
            " it too), or the third-party distribution that provides it.",
        ]
        lines += [f"Plugin {p!r} failed to load: {e}" for p, e in sorted(load_errors.items())]
        super().__init__("\n".join(lines))


class UnknownEnvironmentError(ValidationError, LookupError):
    """No active environment has the given id."""


class PluginError(RayfineError):
    """A plugin is broken (a misspelt hook) or refused an operation in one of its hooks."""


# --- the container engine ----------------------------------------------------


class RuntimeFailure(RayfineError):
    """The container engine could not do what was asked."""


class EngineUnavailableError(RuntimeFailure):
    """The engine (docker daemon, podman service) cannot be reached."""


class NotOwnedError(RuntimeFailure):
    """The container exists but Rayfine did not start it, so Rayfine leaves it alone."""


class ImageBuildError(RuntimeFailure):
    """An image build failed; ``log_tail`` holds the last lines of build output."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        self.log_tail = log_tail
        super().__init__(message + (f"\n--- last build output ---\n{log_tail}" if log_tail else ""))


class ImageNotFoundError(RuntimeFailure, LookupError):
    """The image does not exist locally (Rayfine never pulls implicitly)."""


class StartError(RuntimeFailure):
    """A container could not be started, or exited before it became ready."""

    def __init__(self, message: str, logs: str = "", exit_code: Optional[int] = None) -> None:
        self.logs = logs
        self.exit_code = exit_code
        super().__init__(
            message + (f"\n--- container log (last lines) ---\n{logs}" if logs else "")
        )


class EnvLoadError(StartError):
    """The server in the container is up but could not import env.py."""


class ContainerDiedError(RuntimeFailure):
    """The container stopped, was removed, or its server stopped answering, while in use.

    ``exit_code`` and ``oom_killed`` say how it ended when it exited; both are
    None/False when it was removed by someone else or its server went silent
    (the message says which).
    """

    def __init__(
        self, message: str, exit_code: Optional[int], oom_killed: bool, logs: str = ""
    ) -> None:
        self.exit_code = exit_code
        self.oom_killed = oom_killed
        self.logs = logs
        detail = ""
        if exit_code is not None:
            detail = f" (exit code {exit_code}{', killed: out of memory' if oom_killed else ''})"
        super().__init__(
            message + detail + (f"\n--- container log (last lines) ---\n{logs}" if logs else "")
        )


class ContainerPausedError(RuntimeFailure):
    """The container has been paused (``docker pause``) for longer than a call may wait."""


class ServerOverloadedError(RuntimeFailure):
    """The server in the container cannot take the call: every worker thread is stuck."""


class CapacityError(RuntimeFailure):
    """A host-wide or pool limit is reached and stayed reached for the caller's whole wait."""


# --- time --------------------------------------------------------------------


class RayfineTimeout(RayfineError, TimeoutError):
    """Something took longer than its configured limit."""


class StartTimeout(RayfineTimeout, StartError):
    """The container did not become healthy within ``start_timeout`` seconds."""


class CallTimeout(RayfineTimeout):
    """A method call did not finish within its ``timeout``."""


# --- the wire ----------------------------------------------------------------


class TransportError(RayfineError, ConnectionError):
    """The HTTP exchange with the container failed (refused, reset, bad response).

    ``connect_failed`` is True when no connection could be opened at all.
    """

    def __init__(self, message: str, *, connect_failed: bool = False) -> None:
        self.connect_failed = connect_failed
        super().__init__(message)


class ResponseTooLargeError(TransportError):
    """An answer exceeded the client's size cap (``RAYFINE_MAX_RESPONSE_BYTES``)."""


class RequestTooLargeError(ValidationError):
    """A call's arguments exceed the size cap; refused before (or instead of) sending."""


class EnvironmentClosedError(RayfineError):
    """The environment was cleaned up; load it again to keep calling it."""


# --- the environment's own code ----------------------------------------------


class RemoteError(RayfineError):
    """The environment reported an error; carries the remote type, message and traceback."""

    def __init__(
        self, remote_type: str, message: str, traceback: Optional[str] = None, *, method: str = ""
    ) -> None:
        self.remote_type = remote_type
        self.remote_message = message
        self.remote_traceback = traceback
        self.method = method
        where = f" in {method}()" if method else ""
        text = f"{remote_type}{where}: {message}"
        if traceback:
            text += f"\n--- remote traceback ---\n{traceback.rstrip()}"
        super().__init__(text)


class RemoteException(RemoteError):
    """The environment's code raised an exception."""


class RemoteHTTPError(RemoteException):
    """An http-based environment answered with an error status; ``status_code`` and ``detail`` say which."""

    def __init__(self, status_code: int, detail: object, *, method: str = "") -> None:
        self.status_code = status_code
        self.detail = detail
        super().__init__(
            f"HTTP {status_code}",
            detail if isinstance(detail, str) else repr(detail),
            method=method,
        )


class ActorInitError(RemoteError):
    """``Actor.__init__`` raised inside the container."""


class MethodNotFoundError(RemoteError, AttributeError):
    """The environment has no public method of that name."""


class InvalidArgumentsError(RemoteError, TypeError):
    """The arguments do not fit the method's signature."""


class ResultNotSerializableError(RemoteError):
    """The method returned something that cannot be encoded as JSON (or decoded: too deep)."""


# --- sessions ------------------------------------------------------------------


class SessionError(RayfineError):
    """A session could not be opened or used."""


class SessionCapacityError(SessionError):
    """The container already holds as many sessions as it may (``max_sessions``)."""


class UnknownSessionError(SessionError, LookupError):
    """The server knows no session of that id."""


class SessionClosedError(SessionError):
    """The session was closed, or expired after being idle too long."""
