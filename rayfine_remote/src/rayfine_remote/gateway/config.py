"""The gateway's settings, checked once before anything starts."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from rayfine_core.errors import ValidationError

VERSION = "0.1.0"
DEFAULT_PORT = 8443
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,39}")


def default_state_dir(name: str) -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "rayfine" / "gateway" / name


@dataclass
class GatewayConfig:
    """Everything ``rayfine serve`` was asked for.

    :param runtime: the runtime that runs environments (docker, podman, kubernetes, process).
    :param tokens_file: the clients and their policies (see :mod:`.tokens`).
    :param name: this gateway's name: its containers' label, its state directory.
        Two gateways sharing a runtime need different names.
    :param host: address to listen on; ``port``: TCP port (0: any free one).
    :param unix_socket: listen on this Unix socket instead of TCP.
    :param tls_cert: certificate (PEM) to serve, with ``tls_key``; without
        them a self-signed one is made once and kept in the state directory.
    :param tls: False serves plain HTTP (loopback or a Unix socket only,
        or behind a TLS-terminating proxy with ``insecure_bind``).
    :param state_dir: where the lock, the self-signed certificate and the
        audit log live (default ``$XDG_STATE_HOME/rayfine/gateway/NAME``).
    :param audit_log: file for the audit log (default: stderr).
    :param lease_timeout: seconds without a heartbeat after which an
        environment is stopped.
    :param max_body_bytes: largest forwarded request body.
    :param max_context_bytes: largest build upload.
    """

    runtime: str
    tokens_file: Path
    name: str = "default"
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    unix_socket: Optional[str] = None
    tls_cert: Optional[Path] = None
    tls_key: Optional[Path] = None
    tls: bool = True
    insecure_bind: bool = False
    state_dir: Optional[Path] = None
    audit_log: Optional[Path] = None
    lease_timeout: float = 60.0
    max_body_bytes: int = 64 * 1024 * 1024 + 64 * 1024
    max_context_bytes: int = 4 * 1024 * 1024 * 1024
    engine_threads: int = 32

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValidationError(
                f"Gateway name {self.name!r}: use lowercase letters, digits, '_', '.', '-'."
            )
        if self.state_dir is None:
            self.state_dir = default_state_dir(self.name)
        if not (self.lease_timeout > 0):
            raise ValidationError("The lease timeout must be a positive number of seconds.")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValidationError("Give both --tls-cert and --tls-key, or neither.")
        if (
            not self.tls
            and self.unix_socket is None
            and not _loopback(self.host)
            and not self.insecure_bind
        ):
            raise ValidationError(
                f"Refusing plain HTTP on {self.host}: tokens would cross the network in"
                " clear. Drop --no-tls (a self-signed certificate is made for you), or add"
                " --insecure-bind if a TLS-terminating proxy stands in front."
            )

    @property
    def state(self) -> Path:
        assert self.state_dir is not None
        return self.state_dir


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
