"""In-image servers come from plugins too: Rayfine's own is ``python``; a third party may add one."""

from __future__ import annotations

import json
import textwrap
import types
from pathlib import Path

import pytest

import rayfine_core as rf
from rayfine_core import errors
from rayfine_core.plugins import get_manager, register, unregister

# A whole server in a few lines of the standard library: the protocol is small.
TINY_SERVER = textwrap.dedent(
    """
    import json, os, socketserver
    from http.server import BaseHTTPRequestHandler

    TOKEN = open(os.environ["RAYFINE_TOKEN_FILE"]).read().strip()
    os.unlink(os.environ["RAYFINE_TOKEN_FILE"])


    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def answer(self, status, payload):
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def authorised(self):
            if self.headers.get("authorization") == f"Bearer {TOKEN}":
                return True
            self.answer(401, {"error": {"kind": "unauthorized", "type": "", "message": "no"}})
            return False

        def do_GET(self):
            if not self.authorised():
                return
            if self.path == "/health":
                self.answer(200, {"status": "ok"})
            else:
                method = {"name": "hello", "signature": "(who: str)", "params": [
                    {"name": "who", "kind": "POSITIONAL_OR_KEYWORD", "required": True}]}
                self.answer(200, {"methods": [method]})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            if self.authorised():
                self.answer(200, {"result": f"tiny says hello to {body['args'][0]}"})

        def log_message(self, *args):
            pass


    class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
        def get_request(self):
            request, _ = super().get_request()
            return request, ("unix", 0)


    Server(os.environ["RAYFINE_UDS"], Handler).serve_forever()
    """
)


@pytest.fixture
def tiny(tmp_path: Path):
    script = tmp_path / "tiny_server.py"
    script.write_text(TINY_SERVER)

    @rf.hookimpl
    def rayfine_servers():
        yield rf.ServerSpec(
            name="tiny",
            files=lambda: {"tiny_server.py": script},
            command=("python3", "/opt/rayfine/site/tiny_server.py"),
            description="a tiny server for tests",
        )

    name = register(types.SimpleNamespace(rayfine_servers=rayfine_servers), name="tiny-server")
    try:
        yield
    finally:
        unregister(name)


def test_rayfines_own_server_is_a_plugin():
    spec = get_manager().server("python")
    files = spec.files()
    assert "rayfine_server/__main__.py" in files and "rayfine_start.py" in files
    assert "rayfine_server/plugin.py" not in files  # host-side only, never in an image


def test_rayfine_plugins_lists_the_servers_with_their_plugins(tiny, capsys):
    from rayfine_core.cli import main

    assert main(["plugins", "--json"]) == 0
    servers = {s["server"]: s for s in json.loads(capsys.readouterr().out)["servers"]}
    assert servers["python"]["distribution"].startswith("rayfine-server ")
    assert servers["tiny"] == {
        "server": "tiny",
        "plugin": "tiny-server",
        "distribution": "registered in code",
        "description": "a tiny server for tests",
    }
    assert main(["plugins"]) == 0
    assert "SERVER (in images)" in capsys.readouterr().out


def test_an_unknown_server_lists_the_installed_ones(tmp_path):
    (tmp_path / "env.py").write_text("def f():\n    return 1\n")
    with pytest.raises(errors.UnknownServerError, match="Choose one of: python"):
        rf.build_image_from_env(tmp_path, "unit-x:latest", runtime="process", server="nope")


def test_a_third_party_server_builds_and_answers(tiny, tmp_path):
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    (env_dir / "env.py").write_text("def hello(who: str) -> str:\n    return who\n")
    rf.build_image_from_env(
        env_dir, "unit-tiny:latest", quiet=True, runtime="process", server="tiny"
    )
    with rf.load_env("unit-tiny:latest", runtime="process") as env:
        assert [m.name for m in env.list_methods()] == ["hello"]
        assert env.hello("you") == "tiny says hello to you"
