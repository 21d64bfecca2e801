"""The host-side proxy, in process, against a fake internet in a network namespace."""

from __future__ import annotations

import logging
import os
import socket
import ssl
import stat
import time
from pathlib import Path
from typing import Callable

import pytest

from rayfine_core.egress import EgressPolicy, EgressProxy, ProxyLimits, StaticResolver
from rayfine_core.egress.stats import LOG_BURST, printable
from rayfine_core.errors import UnknownEnvironmentError, ValidationError

from .client import ask, connect, https_get, open_tunnel, read_all, refusal
from .netns import FakeInternet

pytestmark = pytest.mark.netns


@pytest.fixture
def sock(proxy: EgressProxy, policy: EgressPolicy, run_dir: Path) -> str:
    path = str(run_dir / "egress.sock")
    proxy.add(path, policy, "env-a")
    return path


def test_https_reaches_the_allowed_host_and_is_counted(
    proxy: EgressProxy, sock: str, fake_internet: FakeInternet
) -> None:
    answer = https_get(sock, "api.allowed.test", 443, fake_internet.cert, "/v1/models")
    assert answer["sni"] == "api.allowed.test"
    assert answer["server"].endswith(fake_internet.allowed_ip)
    assert answer["path"] == "/v1/models"
    stats = proxy.stats("env-a")
    assert (stats.allowed, stats.denied, stats.failed) == (1, 0, 0)
    assert stats.bytes_out > 200 and stats.bytes_in > 200


def test_wildcards_and_listed_ports(sock: str, fake_internet: FakeInternet) -> None:
    assert https_get(sock, "x.models.test", 443, fake_internet.cert)["sni"] == "x.models.test"
    assert https_get(sock, "api.allowed.test", 8443, fake_internet.cert)["port"] == 8443


def test_plain_http_goes_upstream_in_origin_form_without_proxy_headers(
    sock: str, fake_internet: FakeInternet
) -> None:
    with connect(sock) as s:
        s.sendall(
            b"GET http://api.allowed.test/a/b?c=d HTTP/1.1\r\nHost: api.allowed.test\r\n"
            b"Proxy-Authorization: Basic c2VjcmV0\r\nProxy-Connection: keep-alive\r\n\r\n"
        )
        response = read_all(s)
    assert response.startswith(b"HTTP/1.1 200")
    assert b'"path": "/a/b?c=d"' in response
    assert b'"proxy_headers": []' in response
    assert b'"host": "api.allowed.test"' in response


def test_a_large_upload_is_relayed_whole(
    proxy: EgressProxy, sock: str, fake_internet: FakeInternet
) -> None:
    body = os.urandom(3 * 1024 * 1024)
    answer = https_get(sock, "api.allowed.test", 443, fake_internet.cert, body=body)
    assert answer["received"] == len(body)
    assert proxy.stats("env-a").bytes_out > len(body)


Case = Callable[[FakeInternet], bytes]


def connect_to(target: str) -> Case:
    return lambda fake: f"CONNECT {target.format(f=fake)} HTTP/1.1\r\n\r\n".encode()


REFUSALS: list[tuple[str, Case, int, str]] = [
    ("host not listed", connect_to("denied.test:443"), 403, "not_in_allow_list"),
    ("other port on a listed name", connect_to("api.allowed.test:8080"), 403, "port_not_allowed"),
    ("IP literal", connect_to("{f.allowed_ip}:443"), 403, "ip_literal_not_listed"),
    ("IPv6 literal", connect_to("[{f.server_v6}]:443"), 403, "ip_literal_not_listed"),
    ("decimal IP", connect_to("2130706433:443"), 403, "ip_literal_not_listed"),
    ("loopback literal", connect_to("127.0.0.1:22"), 403, "ip_literal_not_listed"),
    ("localhost", connect_to("localhost:443"), 403, "not_in_allow_list"),
    ("listed name -> 127.0.0.1", connect_to("rebind-loopback.test:443"), 403, "address_loopback"),
    ("listed name -> metadata", connect_to("metadata.test:80"), 403, "address_link_local"),
    ("listed name -> private", connect_to("lan.test:443"), 403, "address_private"),
    ("listed name -> this host", connect_to("self.test:443"), 403, "address_this_host"),
    ("listed name -> ::ffff:127.0.0.1", connect_to("mapped.test:443"), 403, "address_loopback"),
    (
        "plain HTTP to a name not listed",
        lambda f: b"GET http://denied.test/ HTTP/1.1\r\nHost: denied.test\r\n\r\n",
        403,
        "not_in_allow_list",
    ),
    (
        "plain HTTP whose Host names another host",
        lambda f: b"GET http://api.allowed.test/ HTTP/1.1\r\nHost: denied.test\r\n\r\n",
        403,
        "host_header_mismatch",
    ),
    (
        "two CONNECTs in one preamble",
        lambda f: (
            b"CONNECT api.allowed.test:443 HTTP/1.1\r\n\r\nCONNECT denied.test:443 HTTP/1.1\r\n\r\n"
        ),
        400,
        "data_before_tunnel",
    ),
    (
        "Content-Length with Transfer-Encoding",
        lambda f: (
            b"POST http://api.allowed.test/ HTTP/1.1\r\nHost: api.allowed.test\r\n"
            b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        ),
        400,
        "ambiguous_length",
    ),
    (
        "very long header",
        lambda f: b"CONNECT api.allowed.test:443 HTTP/1.1\r\nX: " + b"a" * 40000 + b"\r\n\r\n",
        431,
        "header_too_large",
    ),
    ("name that does not resolve", connect_to("unresolvable.test:443"), 502, "resolve_failed"),
    ("nothing listening", connect_to("closed.allowed.test:81"), 502, "connect_failed"),
    ("not HTTP at all", lambda f: b"\x16\x03\x01\x00\x05hello\r\n\r\n", 400, "bad_request"),
]


@pytest.mark.parametrize(
    "case, status, reason", [c[1:] for c in REFUSALS], ids=[c[0] for c in REFUSALS]
)
def test_refusals(
    proxy: EgressProxy,
    sock: str,
    fake_internet: FakeInternet,
    case: Case,
    status: int,
    reason: str,
) -> None:
    assert ask(sock, case(fake_internet)) == (status, reason)
    stats = proxy.stats("env-a")
    assert (stats.allowed, stats.denied + stats.failed) == (0, 1)
    assert stats.bytes_out == 0


def wait_for(predicate: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


@pytest.mark.parametrize("server_name", ["denied.test", "other.allowed.test"])
def test_tls_naming_another_host_than_the_tunnel_is_cut(
    proxy: EgressProxy, sock: str, fake_internet: FakeInternet, server_name: str
) -> None:
    # other.allowed.test shares the address and the certificate: only the SNI check stops it.
    with pytest.raises((ssl.SSLError, OSError)):
        https_get(sock, "api.allowed.test", 443, fake_internet.cert, server_name=server_name)
    wait_for(lambda: proxy.stats("env-a").denied == 1)
    assert proxy.stats("env-a").allowed == 0


def test_the_sni_check_covers_tls_on_other_listed_ports(
    proxy: EgressProxy, sock: str, fake_internet: FakeInternet
) -> None:
    with pytest.raises((ssl.SSLError, OSError)):
        https_get(sock, "api.allowed.test", 8443, fake_internet.cert, server_name="denied.test")
    wait_for(lambda: proxy.stats("env-a").denied == 1)


def test_port_443_carries_tls_only(proxy: EgressProxy, sock: str) -> None:
    with open_tunnel(sock, "api.allowed.test", 443) as tunnel:
        tunnel.sendall(b"GET / HTTP/1.1\r\nHost: api.allowed.test\r\n\r\n")
        assert read_all(tunnel) == b""
    wait_for(lambda: proxy.stats("env-a").denied == 1)


def test_a_server_that_speaks_first_works_on_a_listed_port(sock: str) -> None:
    with open_tunnel(sock, "banner.allowed.test", 2525) as tunnel:
        assert read_head_line(tunnel) == b"220 fake.test ready\r\n"
        tunnel.sendall(b"HELO")
        assert read_all(tunnel) == b"250 got HELO"


def read_head_line(sock: socket.socket) -> bytes:
    out = b""
    while not out.endswith(b"\n"):
        out += sock.recv(1)
    return out


def test_a_slow_request_head_times_out(proxy: EgressProxy, sock: str) -> None:
    with connect(sock) as s:
        s.sendall(b"CONNECT api.allowed.test:443 HTTP/1.1\r\n")
        started = time.monotonic()
        assert refusal(read_all(s)) == (408, "head_timeout")
        assert time.monotonic() - started < proxy.limits.head_timeout + 2


def test_connections_per_environment_are_bounded(
    resolver: StaticResolver, policy: EgressPolicy, run_dir: Path
) -> None:
    proxy = EgressProxy(resolver=resolver, limits=ProxyLimits(max_connections=2))
    try:
        path = str(run_dir / "egress.sock")
        proxy.add(path, policy, "env-a")
        first = open_tunnel(path, "banner.allowed.test", 2525)
        second = open_tunnel(path, "banner.allowed.test", 2525)
        assert ask(path, b"CONNECT api.allowed.test:443 HTTP/1.1\r\n\r\n") == (
            503,
            "too_many_connections",
        )
        first.close()
        wait_for(lambda: proxy.stats("env-a").active == 1)
        open_tunnel(path, "banner.allowed.test", 2525).close()
        second.close()
    finally:
        proxy.close()


def test_idle_tunnels_are_closed(
    resolver: StaticResolver, policy: EgressPolicy, run_dir: Path
) -> None:
    proxy = EgressProxy(resolver=resolver, limits=ProxyLimits(idle_timeout=1))
    try:
        path = str(run_dir / "egress.sock")
        proxy.add(path, policy, "env-a")
        with open_tunnel(path, "banner.allowed.test", 2525) as tunnel:
            read_head_line(tunnel)
            started = time.monotonic()
            assert read_all(tunnel) == b""  # nothing sent: the proxy hangs up
            assert 0.8 < time.monotonic() - started < 4
    finally:
        proxy.close()


def test_remove_cuts_open_tunnels_and_deletes_the_socket(proxy: EgressProxy, sock: str) -> None:
    tunnel = open_tunnel(sock, "banner.allowed.test", 2525)
    read_head_line(tunnel)
    stats = proxy.remove(sock)
    assert stats.allowed == 1
    assert not os.path.exists(sock)
    assert read_all(tunnel) == b""
    tunnel.close()
    with pytest.raises(UnknownEnvironmentError):
        proxy.stats("env-a")
    assert proxy.remove(sock).allowed == 0  # idempotent


def test_the_socket_is_open_to_the_container_user_and_nothing_else_is_touched(
    proxy: EgressProxy, policy: EgressPolicy, run_dir: Path
) -> None:
    path = run_dir / "egress.sock"
    proxy.add(str(path), policy, "env-a")
    mode = path.lstat().st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o666
    with pytest.raises(ValidationError, match="already served"):
        proxy.add(str(path), policy, "env-a")
    planted = run_dir / "planted"
    planted.write_text("x")
    with pytest.raises(ValidationError, match="not a socket"):
        proxy.add(str(planted), policy, "env-b")
    assert planted.read_text() == "x"
    with pytest.raises(ValidationError, match="too long"):
        proxy.add(str(run_dir / ("x" * 120)), policy, "env-c")


def test_a_replaced_socket_file_is_left_alone_on_removal(
    proxy: EgressProxy, policy: EgressPolicy, run_dir: Path
) -> None:
    path = run_dir / "egress.sock"
    proxy.add(str(path), policy, "env-a")
    path.unlink()
    path.symlink_to("/etc/hostname")  # what a hostile container could do
    proxy.remove(str(path))
    assert path.is_symlink()


def test_environments_are_kept_apart(
    proxy: EgressProxy, policy: EgressPolicy, run_dir: Path, fake_internet: FakeInternet
) -> None:
    a, b = str(run_dir / "a.sock"), str(run_dir / "b.sock")
    proxy.add(a, policy, "env-a")
    proxy.add(b, EgressPolicy(["denied.test"], allow_private=True), "env-b")
    assert ask(a, b"CONNECT denied.test:443 HTTP/1.1\r\n\r\n") == (403, "not_in_allow_list")
    assert https_get(b, "denied.test", 443, fake_internet.cert)["server"].endswith(
        fake_internet.denied_ip
    )
    assert ask(b, b"CONNECT api.allowed.test:443 HTTP/1.1\r\n\r\n") == (403, "not_in_allow_list")
    assert (proxy.stats("env-a").denied, proxy.stats("env-a").allowed) == (1, 0)
    assert (proxy.stats("env-b").denied, proxy.stats("env-b").allowed) == (1, 1)


def test_logs_name_host_port_env_and_decision_but_no_request_content(
    sock: str, fake_internet: FakeInternet, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="rayfine.egress")
    https_get(sock, "api.allowed.test", 443, fake_internet.cert, path="/secret-path?key=sk-123")
    with connect(sock) as s:
        s.sendall(
            b"GET http://api.allowed.test/other-secret HTTP/1.1\r\nHost: api.allowed.test\r\n"
            b"Authorization: Bearer sk-secret-token\r\n\r\n"
        )
        read_all(s)
    ask(sock, b"CONNECT denied.test:443 HTTP/1.1\r\n\r\n")
    text = caplog.text
    assert "env=env-a decision=allow host=api.allowed.test port=443 reason=ok" in text
    assert "env=env-a decision=allow host=api.allowed.test port=80 reason=ok" in text
    assert "env=env-a decision=deny host=denied.test port=443 reason=not_in_allow_list" in text
    for secret in ("secret-path", "sk-123", "other-secret", "sk-secret-token", "Bearer"):
        assert secret not in text


def test_a_flood_of_refusals_is_counted_but_not_all_logged(
    proxy: EgressProxy, sock: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="rayfine.egress")
    for _ in range(150):
        ask(sock, b"CONNECT denied.test:443 HTTP/1.1\r\n\r\n")
    assert proxy.stats("env-a").denied == 150
    lines = [r for r in caplog.records if r.name == "rayfine.egress"]
    assert LOG_BURST <= len(lines) < LOG_BURST + 20


def test_hostile_text_is_escaped_before_it_reaches_a_log() -> None:
    assert printable("evil\nINFO fake line\x1b[31m") == "evil\\x0aINFO\\x20fake\\x20line\\x1b[31m"
    assert len(printable("a" * 1000)) == 120
