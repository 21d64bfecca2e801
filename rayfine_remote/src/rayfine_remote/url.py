"""Where a gateway is: its URL parsed into an Endpoint, with TLS settings and the certificate pin.

Accepted forms::

    https://gw.example:8443                      verified against the system's CAs
    https://10.0.0.5:8443#sha256=9f86d0...       pinned: exactly this certificate (self-signed is fine)
    http://127.0.0.1:8080                        plain HTTP, loopback only (a local test gateway)
    unix:///run/rayfine-gateway.sock             a Unix socket on this host

``RAYFINE_REMOTE_TLS_FINGERPRINT`` pins a certificate when the URL does not,
``RAYFINE_REMOTE_CA_FILE`` names CAs to trust instead of the system's, and
``RAYFINE_REMOTE_ALLOW_HTTP=1`` allows plain HTTP to other hosts (a trusted
network or a TLS-terminating proxy in front; the token then travels in clear).
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from typing import Optional
from urllib.parse import unquote, urlsplit

from rayfine_core import errors
from rayfine_core.runtime.types import Endpoint, TLSConfig

URL_VARIABLE = "RAYFINE_REMOTE_URL"
TOKEN_VARIABLE = "RAYFINE_REMOTE_TOKEN"
_PIN = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class Gateway:
    """A parsed gateway address: the endpoint to reach it (without credentials) and its URL."""

    url: str
    """The URL as shown in messages (without the fragment)."""
    endpoint: Endpoint


def parse(url: str) -> Gateway:
    """Parse a gateway URL (see the module docstring).

    :raises ValidationError: the URL is malformed, or asks for plain HTTP to another host.
    """
    if not isinstance(url, str) or not url.strip():
        raise errors.ValidationError(
            f"No gateway URL: pass url='https://HOST:PORT#sha256=...' or set {URL_VARIABLE}."
        )
    parts = urlsplit(url.strip())
    shown = parts._replace(fragment="").geturl()
    if parts.scheme == "unix":
        path = unquote(parts.path or parts.netloc)
        if not path.startswith("/"):
            raise errors.ValidationError(
                f"A unix: gateway URL needs an absolute path, got {url!r}."
            )
        return Gateway(shown, Endpoint(unix_socket=path))
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise errors.ValidationError(
            f"Gateway URL {shown!r} must look like https://HOST:PORT (or unix:///PATH)."
        )
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise errors.ValidationError(f"Gateway URL {shown!r} has a bad port.") from None
    if parts.path not in ("", "/") or parts.query or parts.username:
        raise errors.ValidationError(
            f"Gateway URL {shown!r} must be just scheme://HOST:PORT (no path, query or user)."
        )
    host = parts.hostname
    if parts.scheme == "http":
        if not _loopback(host) and os.environ.get("RAYFINE_REMOTE_ALLOW_HTTP") != "1":
            raise errors.ValidationError(
                f"Refusing plain HTTP to {host}: the token would cross the network in clear. Use"
                " https:// (the gateway serves TLS by default), or set RAYFINE_REMOTE_ALLOW_HTTP=1"
                " if a TLS-terminating proxy or a private link protects it."
            )
        return Gateway(shown, Endpoint(host=host, port=port))
    return Gateway(shown, Endpoint(host=host, port=port, scheme="https", tls=_tls(parts.fragment)))


def _tls(fragment: str) -> TLSConfig:
    pin: Optional[str] = None
    for item in filter(None, fragment.split("&")):
        key, _, value = item.partition("=")
        if key != "sha256":
            raise errors.ValidationError(
                f"Unknown gateway URL fragment {key!r}: the only one is #sha256=FINGERPRINT."
            )
        pin = value
    pin = pin or os.environ.get("RAYFINE_REMOTE_TLS_FINGERPRINT") or None
    if pin is not None:
        pin = pin.replace(":", "").lower()
        if not _PIN.fullmatch(pin):
            raise errors.ValidationError(
                "A certificate fingerprint is 64 hex digits (sha256 of the certificate),"
                " as `rayfine serve` prints it."
            )
    return TLSConfig(ca_file=os.environ.get("RAYFINE_REMOTE_CA_FILE") or None, pin_sha256=pin)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
