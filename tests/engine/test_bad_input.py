"""Bad input gets a clear, typed error, and the server keeps serving.

Property tests throw random and hostile requests at a real container's /call
(bypassing the client's own checks) and random build inputs at the builder.
"""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rayfine_core as rf
from rayfine_core import errors

ERROR_STATUSES = {400, 404, 422, 500, 504}
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
method_names = st.one_of(
    st.sampled_from(
        [
            "add",
            "echo",
            "fail",
            "unserialisable",
            "square",
            "_private",
            "__init__",
            "__class__",
            "__dict__",
            "join",
            "os",
            "time",
            "Actor",
            "",
            "add ",
            "../etc/passwd",
        ]
    ),
    st.text(max_size=30),
)


@pytest.fixture(scope="module")
def raw(rayfine_runtime, rayfine_image):
    """A running kitchen-sink env and a raw HTTP client to its server (with the token)."""
    with rf.load_env(rayfine_image("kitchen-sink"), runtime=rayfine_runtime) as env:
        endpoint = env.handle.endpoint
        transport = httpx.HTTPTransport(uds=endpoint.unix_socket)
        token = json.loads(env.detach().read_text())["token"]  # the state file holds it
        headers = {"authorization": f"Bearer {token}"}
        with httpx.Client(
            base_url="http://rayfine", transport=transport, headers=headers, timeout=30
        ) as client:
            yield env, client


def assert_clear_error_or_result(response: httpx.Response) -> None:
    body = response.json()
    if response.status_code == 200:
        assert "result" in body
    else:
        assert response.status_code in ERROR_STATUSES, response.text
        assert {"kind", "type", "message"} <= set(body["error"]), body
        assert body["error"]["message"]


def assert_still_serving(env, client: httpx.Client) -> None:
    assert client.get("/health").status_code == 200
    assert env.add(1) == 3


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    method=method_names,
    args=st.lists(json_values, max_size=4),
    kwargs=st.dictionaries(st.text(max_size=10), json_values, max_size=4),
)
def test_random_calls_get_a_result_or_a_typed_error(raw, method, args, kwargs):
    env, client = raw
    response = client.post("/call", json={"method": method, "args": args, "kwargs": kwargs})
    assert_clear_error_or_result(response)
    if method.startswith("_") or method in ("join", "os", "time", "Actor"):
        assert response.status_code == 404


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_malformed_bodies_are_rejected(raw, body):
    env, client = raw
    response = client.post("/call", content=body, headers={"content-type": "application/json"})
    assert_clear_error_or_result(response)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"null",
        b"[]",
        b'"add"',
        b'{"method": 5}',
        b'{"method": "add", "args": {}}',
        b'{"method": "add", "kwargs": []}',
        b'{"method": "add", "args": [1], "timeout": -1}',
        b'{"method": "add", "args": [1], "timeout": "soon"}',
        b'{"method": "add", "bogus": 1}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"method": "add", "args": [' + b"1," * 200_000 + b"1]}",
    ],
    ids=lambda b: b[:30].decode(errors="replace"),
)
def test_hostile_bodies(raw, body):
    env, client = raw
    response = client.post("/call", content=body, headers={"content-type": "application/json"})
    assert response.status_code in (400, 422), response.text[:300]
    assert_clear_error_or_result(response)
    assert_still_serving(env, client)


def test_huge_body_is_refused(raw):
    env, client = raw
    huge = json.dumps({"method": "echo", "args": ["x" * (65 * 1024 * 1024)]}).encode()
    response = client.post("/call", content=huge, headers={"content-type": "application/json"})
    error = response.json()["error"]
    assert response.status_code == 413 and error["kind"] == "too_large", error
    assert "67108864" in error["message"]  # the limit, so the caller knows what fits
    assert_still_serving(env, client)


def test_missing_token_is_refused(raw):
    env, client = raw
    response = client.post(
        "/call", json={"method": "add", "args": [1]}, headers={"authorization": "Bearer wrong"}
    )
    assert response.status_code == 401
    assert_still_serving(env, client)


def test_non_json_arguments_fail_on_the_client(raw):
    env, _ = raw
    with pytest.raises(errors.InvalidArgumentsError, match="JSON"):
        env.echo(object())


# -- build inputs ---------------------------------------------------------------------


def test_missing_env_dir(tmp_path):
    with pytest.raises(errors.EnvDefinitionError, match="does not exist"):
        rf.build_image_from_env(tmp_path / "nope", "x:latest")


def test_dir_without_env_py(tmp_path):
    with pytest.raises(errors.EnvDefinitionError, match="No env.py"):
        rf.build_image_from_env(tmp_path, "x:latest")


def test_env_py_syntax_error(tmp_path):
    (tmp_path / "env.py").write_text("def broken(:\n")
    with pytest.raises(errors.EnvDefinitionError, match="does not parse"):
        rf.build_image_from_env(tmp_path, "x:latest")


@settings(max_examples=200, deadline=None)
@given(tag=st.text(max_size=40))
def test_random_tags_are_valid_or_rejected_before_any_build(tmp_path_factory, tag):
    from rayfine_core.build.builder import split_tag

    try:
        repo, version = split_tag(tag)
    except errors.ValidationError as exc:
        assert "Invalid image tag" in str(exc)
        return
    assert repo and version and " " not in tag and tag == tag.strip()


@pytest.mark.parametrize("buildargs", [{"BAD NAME": "x"}, {"1X": "y"}, {"": "z"}])
def test_bad_buildarg_names(tmp_path, buildargs):
    (tmp_path / "env.py").write_text("def f():\n    return 1\n")
    with pytest.raises(errors.ValidationError, match="build arg"):
        rf.build_image_from_env(tmp_path, "x:latest", buildargs=buildargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"env_vars": {"BAD-NAME": "x"}}, "environment variable name"),
        ({"env_vars": {"RAYFINE_TOKEN": "x"}}, "reserved"),
        ({"env_vars": ["A=1"]}, "mapping"),
        ({"mem_limit": "lots"}, "mem_limit"),
        ({"cpu_limit": -1}, "cpu_limit"),
        ({"pids_limit": 0}, "pids_limit"),
        ({"http_port": 70000}, "http_port"),
        ({"container_name": "bad name!"}, "container_name"),
        ({"mode": "cloud"}, "Unknown mode"),
        ({"env_type": "grpc"}, "Unknown env_type"),
        ({"start_timeout": 0}, "start_timeout"),
        ({"transport": "carrier-pigeon"}, "transport"),
    ],
    ids=lambda v: str(v)[:40],
)
def test_bad_load_env_arguments(kwargs, match):
    with pytest.raises(errors.ValidationError, match=match):
        rf.load_env("any:image", **kwargs)


def test_secret_values_never_appear_in_validation_errors():
    with pytest.raises(errors.ValidationError) as info:
        rf.load_env("any:image", env_vars={"API_KEY": ["sk-very-secret"]})
    assert "sk-very-secret" not in str(info.value)
