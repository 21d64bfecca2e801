"""Strict parsing of what clients send the proxy: accepted, refused, and what goes upstream."""

from __future__ import annotations

import pytest

from rayfine_core.egress.http_head import BadRequest, parse_request


def head(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_connect() -> None:
    request = parse_request(head("CONNECT API.Example.com.:443 HTTP/1.1", "Host: x"))
    assert (request.connect, request.host, request.port) == (True, "api.example.com", 443)
    v6 = parse_request(head("CONNECT [2001:db8::1]:8443 HTTP/1.1"))
    assert (v6.host, v6.port) == ("2001:db8::1", 8443)


def test_absolute_uri_is_rewritten_to_origin_form_without_proxy_headers() -> None:
    request = parse_request(
        head(
            "POST http://api.example.com:8080/v1/chat?x=1 HTTP/1.1",
            "Host: api.example.com:8080",
            "Proxy-Authorization: Basic c2VjcmV0",
            "Proxy-Connection: keep-alive",
            "Connection: keep-alive, X-Drop-Me",
            "X-Drop-Me: 1",
            "Content-Length: 5",
            "Authorization: Bearer kept-for-the-upstream",
        )
    )
    assert (request.connect, request.host, request.port) == (False, "api.example.com", 8080)
    sent = request.upstream_head.decode()
    assert sent.startswith("POST /v1/chat?x=1 HTTP/1.1\r\n")
    assert "Host: api.example.com:8080" in sent
    assert "Content-Length: 5" in sent
    assert "Authorization: Bearer kept-for-the-upstream" in sent
    assert "Proxy-" not in sent and "X-Drop-Me" not in sent
    assert sent.endswith("Connection: close\r\n\r\n")


def test_default_port_and_empty_path() -> None:
    request = parse_request(head("GET http://api.example.com HTTP/1.1", "Host: API.example.com"))
    assert (request.host, request.port) == ("api.example.com", 80)
    assert request.upstream_head.startswith(b"GET / HTTP/1.1\r\n")
    query = parse_request(head("GET http://a.example?q HTTP/1.0"))  # 1.0: Host optional
    assert query.upstream_head.startswith(b"GET /?q HTTP/1.0\r\n")


def test_connection_cannot_strip_the_headers_that_frame_a_request() -> None:
    request = parse_request(
        head(
            "POST http://a.example/ HTTP/1.1",
            "Host: a.example",
            "Connection: content-length, host",
            "Content-Length: 3",
        )
    )
    assert b"Content-Length: 3" in request.upstream_head
    assert b"Host: a.example" in request.upstream_head


@pytest.mark.parametrize(
    "raw, status, reason",
    [
        (head("GET / HTTP/1.1", "Host: a.example"), 400, "not_absolute_uri"),
        (head("GET https://a.example/ HTTP/1.1", "Host: a.example"), 400, "use_connect"),
        (head("GET ftp://a.example/ HTTP/1.1"), 400, "not_absolute_uri"),
        (head("GET http://a.example/ HTTP/1.1"), 400, "bad_request"),  # no Host in 1.1
        (
            head("GET http://a.example/ HTTP/1.1", "Host: a.example", "Host: a.example"),
            400,
            "bad_request",
        ),
        (head("GET http://a.example/ HTTP/1.1", "Host: b.example"), 403, "host_header_mismatch"),
        (head("GET http://a.example/ HTTP/1.1", "Host: a.example:81"), 403, "host_header_mismatch"),
        (head("GET http://a.example@b.example/ HTTP/1.1", "Host: b.example"), 400, "bad_host"),
        (head("GET http://a.example:80@b.example/ HTTP/1.1"), 400, "bad_host"),
        (head("GET http://%62.example/ HTTP/1.1", "Host: x"), 400, "bad_host"),
        (head("GET http://a.example/#frag HTTP/1.1", "Host: a.example"), 400, "bad_request"),
        (head("CONNECT a.example HTTP/1.1"), 400, "bad_host"),
        (head("CONNECT a.example:443@b.example:443 HTTP/1.1"), 400, "bad_host"),
        (head("CONNECT a.example:99999 HTTP/1.1"), 400, "bad_host"),
        (head("CONNECT [::1 HTTP/1.1"), 400, "bad_host"),
        (head("CONNECT a.example:443 HTTP/1.1", "Content-Length: 10"), 400, "bad_request"),
        (head("CONNECT a.example:443 HTTP/1.1", "Transfer-Encoding: chunked"), 400, "bad_request"),
        (head("CONNECT a.example:443 HTTP/2.0"), 400, "bad_request"),
        (head("connect a.example:443 HTTP/1.1"), 400, "bad_request"),
        (head("CONNECT  a.example:443 HTTP/1.1"), 400, "bad_request"),
        (head("CONNECT a.example:443 HTTP/1.1", " folded: yes"), 400, "bad_request"),
        (head("CONNECT a.example:443 HTTP/1.1", "Bad Name: x"), 400, "bad_request"),
        (head("CONNECT a.example:443 HTTP/1.1", "X: a\x00b"), 400, "bad_request"),
        (b"CONNECT a.example:443 HTTP/1.1\nHost: x\r\n\r\n", 400, "bad_request"),
        (b"CONNECT a.example:443 HTTP/1.1\r\nX: a\rb\r\n\r\n", 400, "bad_request"),
        (
            head(
                "POST http://a.example/ HTTP/1.1",
                "Host: a.example",
                "Content-Length: 3",
                "Transfer-Encoding: chunked",
            ),
            400,
            "ambiguous_length",
        ),  # fmt: skip
        (
            head(
                "POST http://a.example/ HTTP/1.1",
                "Host: a.example",
                "Content-Length: 3",
                "Content-Length: 4",
            ),
            400,
            "ambiguous_length",
        ),  # fmt: skip
        (
            head("POST http://a.example/ HTTP/1.1", "Host: a.example", "Transfer-Encoding: gzip"),
            400,
            "ambiguous_length",
        ),
        (
            head("POST http://a.example/ HTTP/1.1", "Host: a.example", "Content-Length: -1"),
            400,
            "ambiguous_length",
        ),
        (
            head("GET http://a.example/ HTTP/1.1", *[f"X-{i}: y" for i in range(101)]),
            431,
            "header_too_large",
        ),
    ],
)
def test_refused(raw: bytes, status: int, reason: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_request(raw)
    assert (caught.value.status, caught.value.reason) == (status, reason)
