"""The client's side of the gateway's REST routes: JSON requests and streamed answers.

JSON requests go through the core's pooled HTTP client (keep-alive, TLS,
pinning); streamed answers (followed logs, build output) through
``http.client``, which reads chunked bodies as they arrive.  Every failure
becomes a typed error: the gateway out of reach is
:class:`~rayfine_core.errors.EngineUnavailableError` (it is this runtime's
engine), a certificate that is not the pinned one :class:`GatewayTrustError`,
and the gateway's refusals the exceptions of :data:`~rayfine_remote.errors.KINDS`.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import ssl
from dataclasses import replace
from typing import IO, Any, Iterator, Optional, Union

from rayfine_core import errors
from rayfine_core.runtime.types import Endpoint
from rayfine_core.transport.client import Client
from rayfine_core.transport.wire import Response

from .messages import exception_of
from .url import Gateway


class GatewayTrustError(errors.EngineUnavailableError):
    """The gateway's TLS certificate failed verification or is not the pinned one."""


class Control:
    """Authenticated requests to one gateway; safe to share between threads."""

    def __init__(self, gateway: Gateway, token: str) -> None:
        self.gateway = gateway
        self.endpoint: Endpoint = replace(
            gateway.endpoint, headers=(("authorization", f"Bearer {token}"),)
        )
        self._client = Client(self.endpoint)

    def json(
        self,
        verb: str,
        path: str,
        body: Optional[bytes] = None,
        timeout: Optional[float] = 30.0,
        missing_ok: bool = False,
    ) -> Any:
        """Send one request and return its JSON answer (None for a 404 when ``missing_ok``).

        :raises EngineUnavailableError: the gateway cannot be reached or answered nonsense.
        :raises RayfineError: the gateway's refusal, as its typed exception.
        """
        response = self._send(verb, path, body, timeout)
        try:
            payload = json.loads(response.content) if response.content else {}
        except ValueError:
            payload = None
        if 200 <= response.status_code < 300 and isinstance(payload, dict):
            return payload
        if response.status_code == 404 and missing_ok:
            return None
        raise exception_of(response.status_code, payload, f"{verb} {path}")

    def _send(
        self, verb: str, path: str, body: Optional[bytes], timeout: Optional[float]
    ) -> Response:
        try:
            return self._client.request(verb, path, body, timeout)
        except (errors.TransportError, errors.CallTimeout) as exc:
            raise self.unreachable(exc) from exc

    def unreachable(self, exc: BaseException) -> errors.EngineUnavailableError:
        text = str(exc)
        if "pinned" in text or "CERTIFICATE_VERIFY_FAILED" in text:
            return GatewayTrustError(
                f"The gateway at {self.gateway.url} failed the TLS check ({_reason(exc)}): another"
                " server, or someone in between. Check the fingerprint `rayfine serve` printed"
                " (#sha256=... in the URL) or RAYFINE_REMOTE_CA_FILE."
            )
        return errors.EngineUnavailableError(
            f"Cannot reach the Rayfine gateway at {self.gateway.url} ({_reason(exc)}). Is"
            " `rayfine serve` running there, and are RAYFINE_REMOTE_URL / url= right?"
        )

    def stream(
        self,
        verb: str,
        path: str,
        body: Union[bytes, IO[bytes], None] = None,
        idle_timeout: Optional[float] = None,
        missing_ok: bool = False,
        length: Optional[int] = None,
    ) -> Iterator[bytes]:
        """Send one request and yield the answer's body in pieces as they arrive.

        :param idle_timeout: seconds the gateway may stay silent before the
            gateway counts as lost (None: forever).
        :raises: as :meth:`json`, before the first piece.
        """
        connection = self._connect(idle_timeout)
        try:
            try:
                headers = dict(self.endpoint.headers)
                if body is not None:
                    headers["content-type"] = "application/octet-stream"
                if length is not None:
                    headers["content-length"] = str(length)
                connection.request(verb, path, body=body, headers=headers)
                response = connection.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                raise self.unreachable(exc) from exc
            if response.status == 404 and missing_ok:
                return
            if response.status != 200:
                content = response.read()
                try:
                    payload = json.loads(content)
                except ValueError:
                    payload = None
                raise exception_of(response.status, payload, f"{verb} {path}")
            while True:
                try:
                    piece = response.read1(64 * 1024)
                except (OSError, http.client.HTTPException) as exc:
                    raise self.unreachable(exc) from exc
                if not piece:
                    return
                yield piece
        finally:
            connection.close()

    def _connect(self, timeout: Optional[float]) -> http.client.HTTPConnection:
        endpoint = self.endpoint
        if endpoint.unix_socket:
            return _UnixConnection(endpoint.unix_socket, timeout)
        assert endpoint.port is not None
        if endpoint.scheme != "https":
            return http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=timeout)
        return _PinnedConnection(endpoint, timeout)

    def close(self) -> None:
        self._client.close()


def _reason(exc: BaseException) -> str:
    cause = exc.__cause__ or exc
    return f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: Optional[float]) -> None:
        super().__init__("rayfine", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class _PinnedConnection(http.client.HTTPSConnection):
    """HTTPS that checks the certificate pin (or the CAs) the endpoint's TLS settings name."""

    def __init__(self, endpoint: Endpoint, timeout: Optional[float]) -> None:
        tls = endpoint.tls
        context = ssl.create_default_context(cafile=tls.ca_file if tls else None)
        self._pin = tls.pin_sha256 if tls else None
        if self._pin:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        super().__init__(endpoint.host, endpoint.port, timeout=timeout, context=context)

    def connect(self) -> None:
        super().connect()
        if self._pin:
            assert isinstance(self.sock, ssl.SSLSocket)
            seen = hashlib.sha256(self.sock.getpeercert(binary_form=True) or b"").hexdigest()
            if seen != self._pin:
                self.sock.close()
                raise ssl.SSLError(
                    f"the server's certificate (sha256 {seen}) is not the pinned one"
                )
