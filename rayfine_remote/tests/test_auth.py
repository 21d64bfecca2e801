"""Nothing runs without a token; every environment is its client's alone; quotas, allow-list, audit."""

from __future__ import annotations

import json
import socket
import ssl

import pytest

import rayfine_core as rf
from rayfine_core import errors
from rayfine_remote import GatewayAuthError, PolicyError, QuotaExceededError
from rayfine_remote import connect as runtime_of
from rayfine_remote.control import Control
from rayfine_remote.url import parse

SECRET = "s3cr3t-remote-value"


def raw(
    gateway, verb: str, path: str, headers: dict[str, str], body: bytes = b""
) -> tuple[int, bytes]:
    """One request with exactly these headers, over TLS (no pin check: the test made the gateway)."""
    host, port = gateway.url.split("//")[1].split("#")[0].rsplit(":", 1)
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection((host, int(port)), 5) as plain:
        with context.wrap_socket(plain) as sock:
            head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            sock.sendall(
                f"{verb} {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {len(body)}\r\n{head}"
                f"connection: close\r\n\r\n".encode()
                + body
            )
            answer = b""
            while True:
                try:
                    piece = sock.recv(65536)
                except (ssl.SSLError, OSError):
                    break
                if not piece:
                    break
                answer += piece
    head, _, body = answer.partition(b"\r\n\r\n")
    length = [line for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:")]
    if not answer or (length and len(body) < int(length[0].split(b":")[1])):
        return 0, b""  # the connection was dropped without a (complete) answer
    return int(head.split(b" ", 2)[1]), body


ROUTES = [
    ("GET", "/v1/info"),
    ("GET", "/v1/envs"),
    ("POST", "/v1/envs"),
    ("POST", "/v1/heartbeat"),
    ("POST", "/v1/images/inspect"),
    ("POST", "/v1/images/build"),
    ("GET", "/v1/envs/abc"),
    ("DELETE", "/v1/envs/abc"),
    ("GET", "/v1/envs/abc/logs"),
    ("POST", "/v1/envs/abc/proxy/call"),
    ("GET", "/nowhere"),
]


@pytest.mark.parametrize("authorization", [None, "Bearer nope", "Basic YWxpY2U6eA==", "Bearer "])
def test_every_route_needs_a_valid_token(gateway, authorization):
    headers = {} if authorization is None else {"authorization": authorization}
    for verb, path in ROUTES:
        status, body = raw(gateway, verb, path, headers, b"{}")
        assert status == 401, (verb, path, status)
        assert json.loads(body)["error"]["kind"] == "unauthorized"


def test_a_wrong_token_is_a_typed_error_before_anything_runs(gateway, sink):
    with pytest.raises(GatewayAuthError, match="token"):
        rf.load_env(sink, mode="remote", url=gateway.url, token="rft_not-a-client")
    assert isinstance(GatewayAuthError("x"), errors.RuntimeFailure)


def test_no_client_sees_or_touches_another_clients_environment(gateway, connect, sink):
    with rf.load_env(sink, labels={"team": "a"}, **connect("alice")) as env:
        bob = runtime_of(gateway.url, gateway.tokens["bob"])
        assert bob.list_containers({}) == []
        assert bob.list_containers({"team": "a"}) == []
        assert bob.health(env.handle.id).status == "removed"
        assert bob.logs(env.handle.id) == ""
        bob.stop(env.handle.id)  # answered like a missing one, and it does nothing
        assert env.add(1) == 3
        # Bob's client token with Alice's environment token: the connection is dropped.
        status, _ = raw(
            gateway,
            "POST",
            f"{env.handle.endpoint.path_prefix}/call",
            {
                "authorization": f"Bearer {gateway.tokens['bob']}",
                "content-type": "application/json",
            },
            b'{"method": "add", "args": [1]}',
        )
        assert status == 0
        # Alice's client token without the environment's own token: refused.
        status, body = raw(
            gateway,
            "POST",
            f"{env.handle.endpoint.path_prefix}/call",
            {"authorization": f"Bearer {gateway.tokens['alice']}", "x-rayfine-token": "wrong"},
            b'{"method": "add", "args": [1]}',
        )
        assert status == 401 and json.loads(body)["error"]["kind"] == "unauthorized"
        (mine,) = runtime_of(gateway.url, gateway.tokens["alice"]).list_containers({"team": "a"})
        assert mine.id == env.handle.id and mine.status == "running"


def test_quota_of_environments_and_of_starts(gateway, connect, sink):
    with rf.load_env(sink, **connect("tight")):
        with pytest.raises(QuotaExceededError, match="max_envs=1"):
            rf.load_env(sink, **connect("tight"))  # refused: it does not count as a start
    rf.load_env(sink, **connect("tight")).cleanup()
    with pytest.raises(QuotaExceededError, match="starts_per_minute=2"):
        rf.load_env(sink, **connect("tight")).cleanup()
    assert gateway.served.gateway.table.of("tight") == []


def test_images_off_the_allow_list_and_builds_are_refused(gateway, connect, sink, tmp_path):
    with pytest.raises(PolicyError, match="allow-list"):
        rf.load_env(sink, **connect("nothing"))
    with pytest.raises(PolicyError, match="allow-list"):
        runtime_of(gateway.url, gateway.tokens["nothing"]).image_labels(sink)
    (tmp_path / "env.py").write_text("def f():\n    return 1\n")
    bob = runtime_of(gateway.url, gateway.tokens["bob"])
    with pytest.raises(PolicyError, match="may not build"):
        bob.build(
            rf.BuildRequest(context_dir=tmp_path, dockerfile="env.py", tag="rayfine-remote-x:1")
        )
    assert gateway.served.gateway.table.of("nothing") == []


@pytest.mark.parametrize(
    "option, match",
    [
        ({"cap_add": ("SYS_ADMIN",)}, "capabilities"),
        ({"network": "host"}, "network"),
        ({"user": "root"}, "root"),
        ({"runtime_options": {"namespace": "kube-system"}}, "runtime options"),
    ],
)
def test_what_a_token_may_not_ask_for(gateway, connect, sink, option, match):
    with pytest.raises(PolicyError, match=match):
        rf.load_env(sink, env_vars={"API_KEY": SECRET}, **option, **connect("bob"))
    assert gateway.served.gateway.table.of("bob") == []


def test_audit_log_has_decisions_and_no_secrets(gateway, connect, sink):
    with rf.load_env(sink, env_vars={"API_KEY": SECRET}, **connect("bob")) as env:
        env.add(1)
    raw(gateway, "GET", "/v1/info", {"authorization": "Bearer rft_guess"})
    text = gateway.audit.read_text()
    events = [json.loads(line) for line in text.splitlines()]
    assert {"started", "start", "stop", "auth_refused"} <= {e["event"] for e in events}
    start = next(e for e in events if e["event"] == "start" and e["client"] == "bob")
    assert start["env_vars"] == 1 and start["image"] == sink
    assert SECRET not in text
    for token in gateway.tokens.values():
        assert token not in text
    assert "rft_guess" not in text


def test_control_refusals_are_typed(gateway):
    control = Control(parse(gateway.url), gateway.tokens["alice"])
    with pytest.raises(errors.ValidationError):
        control.json("POST", "/v1/envs", b"[1, 2]")
    with pytest.raises(errors.ValidationError):
        control.json(
            "POST",
            "/v1/envs",
            json.dumps(
                {"image": "x", "name": "y", "isolation": "container", "env": {"A": 1}}
            ).encode(),
        )
    with pytest.raises(errors.ValidationError):
        control.json("GET", "/v1/nowhere")
