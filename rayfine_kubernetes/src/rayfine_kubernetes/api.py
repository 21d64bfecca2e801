"""The Kubernetes API as this runtime uses it: JSON requests with a deadline each.

The official client (``kubernetes``) reads the configuration (kubeconfig
with its contexts, client certificates, exec plugins and token refresh, or
the in-cluster service account) and owns the connection pool; requests are
sent here as plain JSON, without the client's model classes, so every call
has one deadline, no hidden retries, and one place that turns a lost API
server into :class:`~rayfine_core.errors.EngineUnavailableError`.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional
from urllib.parse import quote, urlencode

from rayfine_core import errors

from .settings import Settings

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
POOL_SIZE = 64
"""Connections kept per API server: concurrent starts each hold one while they wait."""


class KubeError(errors.RuntimeFailure):
    """The API server answered with an error status (its ``Status`` reason and message)."""

    def __init__(self, status: int, reason: str, message: str, what: str) -> None:
        self.status = status
        self.reason = reason
        self.api_message = message
        super().__init__(f"{what}: HTTP {status} {reason}: {message}")


@dataclass(frozen=True)
class Credentials:
    """How this process authenticates to the API server (for the proxy endpoint)."""

    server: str
    """``https://host:port[/path]``."""
    headers: tuple[tuple[str, str], ...]
    ca_file: Optional[str]
    cert_file: Optional[str]
    key_file: Optional[str]
    verify: bool
    server_hostname: Optional[str]


class Kube:
    """A connection to one cluster, made on first use; thread-safe."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._client: Any = None
        self._namespace = settings.namespace
        self.in_cluster = False

    # -- configuration --------------------------------------------------------

    def _api_client(self) -> Any:
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._connect()
                client = self._client
        return client

    def _connect(self) -> Any:
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        configuration = client.Configuration()
        kubeconfig = self._settings.kubeconfig or os.path.expanduser("~/.kube/config")
        try:
            if self._settings.kubeconfig or os.path.exists(kubeconfig):
                config.load_kube_config(
                    config_file=kubeconfig,
                    context=self._settings.context,
                    client_configuration=configuration,
                    persist_config=False,  # never rewrite the user's kubeconfig
                )
                self._namespace = self._namespace or _context_namespace(
                    kubeconfig, self._settings.context
                )
            elif os.environ.get("KUBERNETES_SERVICE_HOST"):
                config.load_incluster_config(client_configuration=configuration)
                self.in_cluster = True
                self._namespace = self._namespace or _service_account_namespace()
            else:
                raise ConfigException("no kubeconfig and not inside a cluster")
        except (ConfigException, OSError, ValueError, TypeError) as exc:
            raise errors.EngineUnavailableError(
                f"No usable Kubernetes configuration ({exc}). Point KUBECONFIG at a kubeconfig"
                " (and RAYFINE_K8S_CONTEXT at a context), or run in a pod with a service account."
            ) from exc
        configuration.retries = False  # one attempt per call: the caller's deadline is the deadline
        configuration.connection_pool_maxsize = POOL_SIZE
        return client.ApiClient(configuration)

    @property
    def namespace(self) -> str:
        """The default namespace (``RAYFINE_K8S_NAMESPACE``, the context's, or ``default``)."""
        self._api_client()
        return self._namespace or "default"

    @property
    def server(self) -> str:
        return str(self._api_client().configuration.host)

    def credentials(self) -> Credentials:
        """The current credentials (a refreshed token where the configuration refreshes them)."""
        configuration = self._api_client().configuration
        return Credentials(
            server=str(configuration.host).rstrip("/"),
            headers=tuple(_auth_headers(configuration).items()),
            ca_file=configuration.ssl_ca_cert,
            cert_file=configuration.cert_file,
            key_file=configuration.key_file,
            verify=bool(configuration.verify_ssl),
            server_hostname=getattr(configuration, "tls_server_name", None),
        )

    # -- requests -------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Optional[Mapping[str, Any]] = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: Optional[float] = None,
    ) -> Any:
        """Send one request and return its decoded JSON body (None when empty).

        :raises KubeError: the server answered with an error status.
        :raises EngineUnavailableError: no answer within the deadline, connection
            refused or dropped, or the server says it is overloaded or unavailable.
        """
        response = self._send(method, path, query, body, content_type, timeout, stream=False)
        data = response.data
        return json.loads(data) if data else None

    def request_text(
        self, path: str, query: Optional[Mapping[str, Any]] = None, timeout: Optional[float] = None
    ) -> str:
        """GET a text resource (a log)."""
        response = self._send("GET", path, query, None, "", timeout, stream=False)
        return bytes(response.data).decode("utf-8", errors="replace")

    def stream(
        self, path: str, query: Mapping[str, Any], read_timeout: Optional[float]
    ) -> Iterator[bytes]:
        """GET a streamed resource (a watch, a followed log), yielding lines as they come.

        :param read_timeout: longest silence; None: wait forever (a followed log).
        The connection is closed when the caller stops iterating.
        """
        response = self._send(
            "GET", path, query, None, "", read_timeout, stream=True, endless=read_timeout is None
        )
        try:
            pending = b""
            for chunk in response.stream(64 * 1024, decode_content=True):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                yield from (line + b"\n" for line in lines)
            if pending:
                yield pending
        except _transport_errors() as exc:
            raise self._unavailable("GET", path, exc) from exc
        finally:
            response.release_conn()
            response.close()

    def _send(
        self,
        method: str,
        path: str,
        query: Optional[Mapping[str, Any]],
        body: Any,
        content_type: str,
        timeout: Optional[float],
        stream: bool,
        endless: bool = False,
    ) -> Any:
        import urllib3

        api = self._api_client()
        configuration = api.configuration
        url = configuration.host.rstrip("/") + path
        if query:
            url += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        headers = {"Accept": "application/json, */*", "User-Agent": "rayfine-kubernetes"}
        headers.update(_auth_headers(configuration))
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        deadline = self._settings.api_timeout if timeout is None else timeout
        try:
            response = api.rest_client.pool_manager.request(
                method,
                url,
                body=data,
                headers=headers,
                timeout=urllib3.Timeout(
                    connect=min(deadline, 10.0), read=None if endless else deadline
                ),
                retries=False,
                preload_content=not stream,
                redirect=False,
            )
        except _transport_errors() as exc:
            raise self._unavailable(method, path, exc) from exc
        if response.status >= 400:
            raise self._error(method, path, response)
        return response

    def _error(self, method: str, path: str, response: Any) -> Exception:
        try:
            data = response.data
            status = json.loads(data) if data else {}
        except ValueError:
            status = {"message": bytes(data[:300]).decode(errors="replace")}
        finally:
            response.release_conn()
        message = str(status.get("message") or response.reason or "")
        if response.status in (429, 503, 504):
            return errors.EngineUnavailableError(
                f"The Kubernetes API server at {self.server} is overloaded or unavailable"
                f" ({method} {path}: HTTP {response.status}: {message}). Retry later."
            )
        return KubeError(
            response.status,
            str(status.get("reason") or response.reason),
            message,
            f"{method} {path}",
        )

    def _unavailable(
        self, method: str, path: str, exc: BaseException
    ) -> errors.EngineUnavailableError:
        return errors.EngineUnavailableError(
            f"The Kubernetes API server at {self.server} did not answer {method} {path}"
            f" ({type(exc).__name__}: {exc}). Check the cluster (kubectl cluster-info) and"
            " KUBECONFIG / RAYFINE_K8S_CONTEXT; each call waits at most RAYFINE_ENGINE_TIMEOUT"
            f" ({self._settings.api_timeout:g} s)."
        )

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.rest_client.pool_manager.clear()


def path(*parts: str) -> str:
    """An API path from segments, each quoted (names never contain '/', but be safe)."""
    return "/" + "/".join(quote(part, safe=":") for part in parts)


def _auth_headers(configuration: Any) -> dict[str, str]:
    """The Authorization header the configuration sends (refreshing an expiring token)."""
    headers = {}
    for setting in configuration.auth_settings().values():
        if setting.get("in") == "header" and setting.get("value"):
            headers[str(setting["key"]).title()] = str(setting["value"])
    return headers


def _transport_errors() -> tuple[type[BaseException], ...]:
    import urllib3

    return (urllib3.exceptions.HTTPError, socket.timeout, TimeoutError, ConnectionError, OSError)


def _context_namespace(kubeconfig: str, context: Optional[str]) -> Optional[str]:
    from kubernetes import config

    contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
    chosen = next((c for c in contexts if c["name"] == context), None) if context else active
    return ((chosen or {}).get("context") or {}).get("namespace")


def _service_account_namespace() -> Optional[str]:
    try:
        return (SERVICE_ACCOUNT_DIR / "namespace").read_text().strip() or None
    except OSError:
        return None
