"""Pieces without a gateway: build uploads unpacked safely, the tokens file, policy checks, URLs."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from rayfine_core import errors
from rayfine_core.runtime.base import Capabilities
from rayfine_core.runtime.types import BuildRequest, Limits, StartRequest
from rayfine_remote import upload
from rayfine_remote.errors import PolicyError
from rayfine_remote.gateway import policy, tokens
from rayfine_remote.gateway.unpack import unpack
from rayfine_remote.url import parse


def _tar(*members: tuple[tarfile.TarInfo, bytes]) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        meta = json.dumps({"tag": "x:1", "dockerfile": "Dockerfile"}).encode()
        info = tarfile.TarInfo(upload.META)
        info.size = len(meta)
        tar.addfile(info, io.BytesIO(meta))
        directory = tarfile.TarInfo("context")
        directory.type = tarfile.DIRTYPE
        tar.addfile(directory)
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


def test_a_build_request_round_trips(tmp_path):
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "Dockerfile").write_text("FROM x\n")
    (source / "sub" / "a.py").write_text("print(1)\n")
    (source / "link").symlink_to("sub/a.py")
    request = BuildRequest(source, "Dockerfile", "t:1", {"A": "1"}, {"l": "v"}, True)
    (tmp_path / "out").mkdir()
    with upload.pack(request) as packed:
        meta, context = unpack(packed, tmp_path / "out", 1 << 20)
    assert meta == {
        "dockerfile": "Dockerfile",
        "tag": "t:1",
        "buildargs": {"A": "1"},
        "labels": {"l": "v"},
        "nocache": True,
    }
    assert (context / "sub" / "a.py").read_text() == "print(1)\n"
    assert (context / "link").is_symlink() and (context / "link").read_text() == "print(1)\n"


@pytest.mark.parametrize(
    "member",
    [
        _member("/etc/evil"),
        _member("context/../../evil"),
        _member("elsewhere/file"),
        _member("context/up", tarfile.SYMTYPE, "../../etc/passwd"),
        _member("context/abs", tarfile.SYMTYPE, "/etc/passwd"),
        _member("context/hard", tarfile.LNKTYPE, "context/x"),
        _member("context/dev", tarfile.CHRTYPE),
        _member("context/fifo", tarfile.FIFOTYPE),
    ],
)
def test_unsafe_uploads_are_refused(tmp_path, member):
    with pytest.raises(errors.ValidationError):
        unpack(_tar((member, b"x")), tmp_path, 1 << 20)
    assert not (tmp_path.parent / "evil").exists()


def test_nothing_is_written_through_a_link(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    link = _member("context/dir", tarfile.SYMTYPE, ".")
    through = _member("context/dir/file")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(errors.ValidationError, match="not a directory"):
        unpack(_tar((link, b""), (through, b"x")), out, 1 << 20)


def test_upload_size_is_capped(tmp_path):
    with pytest.raises(errors.ValidationError, match="larger than"):
        unpack(_tar((_member("context/big"), b"x" * 2000)), tmp_path, 1000)


def test_tokens_file_stores_digests_only(tmp_path):
    path = tmp_path / "tokens.json"
    token = tokens.add(path, "alice", {"images": ["a:*"], "max_envs": 3})
    assert token.startswith("rft_") and token not in path.read_text()
    assert path.stat().st_mode & 0o077 == 0
    loaded = tokens.load(path)
    found = loaded.find(token)
    assert found is not None and found.name == "alice" and found.max_envs == 3
    assert loaded.find(token + "x") is None and loaded.find("") is None
    with pytest.raises(errors.ValidationError, match="already"):
        tokens.add(path, "alice", {})
    tokens.remove(path, "alice")
    assert tokens.load(path).find(token) is None


@pytest.mark.parametrize(
    "content, match",
    [
        ("not json", "Cannot read"),
        ('{"clients": [{"name": "a", "sha256": "x"}]}', "sha256"),
        ('{"clients": [{"name": "a b", "sha256": "' + "0" * 64 + '"}]}', "name"),
        (
            '{"clients": [{"name": "a", "sha256": "' + "0" * 64 + '", "max_env": 1}]}',
            "unknown keys",
        ),
        ('{"clients": [{"name": "a", "sha256": "' + "0" * 64 + '", "images": "x"}]}', "list"),
    ],
)
def test_malformed_tokens_files_say_what_is_wrong(tmp_path, content, match):
    path = tmp_path / "tokens.json"
    path.write_text(content)
    with pytest.raises(errors.ValidationError, match=match):
        tokens.load(path)


def _client(**settings) -> tokens.Client:
    return tokens.Client(name="c", sha256="0" * 64, **settings)


def test_image_patterns():
    client = _client(images=("affine", "team/*", "eval-?:v1"))
    for allowed in ("affine", "affine:latest", "team/x:3", "eval-a:v1"):
        policy.check_image(client, allowed)
    for refused in ("affine:2", "other", "teamx:1", "eval-ab:v1", "sha256:" + "0" * 64):
        with pytest.raises(PolicyError, match="allow-list"):
            policy.check_image(client, refused)


def test_limits_are_capped_and_applied_when_none_are_asked():
    client = _client(images=("*",), max_memory="1g", max_cpus=2, max_pids=100)
    caps = Capabilities()
    checked = policy.check_start(client, StartRequest(image="a", name="n", limits=Limits()), caps)
    assert checked.limits == Limits("1g", 2.0, 100)
    checked = policy.check_start(
        client, StartRequest(image="a", name="n", limits=Limits("512m", 1.0, 10)), caps
    )
    assert checked.limits == Limits("512m", 1.0, 10)
    for limits in (Limits("2g"), Limits(cpu_limit=4), Limits(pids_limit=1000)):
        with pytest.raises(PolicyError, match="cap"):
            policy.check_start(client, StartRequest(image="a", name="n", limits=limits), caps)


def test_reserved_variables_never_reach_the_runtime():
    client = _client(images=("*",))
    request = StartRequest(
        image="a",
        name="n",
        env={"RAYFINE_HOST": "0.0.0.0", "RAYFINE_INSECURE_NO_TOKEN": "1", "OK": "1"},
    )
    assert policy.check_start(client, request, Capabilities()).env == {"OK": "1"}


def test_gateway_urls():
    pinned = parse("https://gw.example:8443#sha256=" + "AB:" * 31 + "AB")
    assert pinned.endpoint.tls.pin_sha256 == "ab" * 32 and pinned.endpoint.port == 8443
    assert parse("unix:///run/gw.sock").endpoint.unix_socket == "/run/gw.sock"
    assert parse("http://127.0.0.1:9").endpoint.scheme == "http"
    for bad in (
        "ftp://x",
        "https://x:8443/path",
        "https://user@x:1",
        "https://x:1#md5=1",
        "unix://relative",
        "",
    ):
        with pytest.raises(errors.ValidationError):
            parse(bad)
