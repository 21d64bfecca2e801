"""``rayfine token`` and ``rayfine serve`` from the command line."""

from __future__ import annotations

import json

from rayfine_core.cli import main
from rayfine_remote.gateway.tokens import load


def test_token_add_list_remove(tmp_path, capsys):
    path = tmp_path / "tokens.json"
    assert (
        main(
            [
                "token",
                "add",
                "alice",
                "--tokens",
                str(path),
                "--allow",
                "a:*",
                "--max-envs",
                "3",
                "--build",
            ]
        )
        == 0
    )
    token = capsys.readouterr().out.strip()
    assert token.startswith("rft_") and token not in path.read_text()
    client = load(path).find(token)
    assert (
        client is not None and client.images == ("a:*",) and client.max_envs == 3 and client.build
    )
    assert main(["token", "list", "--tokens", str(path), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["name"] == "alice" and "sha256" not in listed[0]
    assert main(["token", "add", "alice", "--tokens", str(path)]) == 2  # taken: bad input
    assert "already" in capsys.readouterr().err
    assert main(["token", "remove", "alice", "--tokens", str(path)]) == 0
    assert load(path).find(token) is None


def test_serve_refuses_bad_settings_before_starting(tmp_path, capsys):
    tokens = tmp_path / "tokens.json"
    assert main(["serve", "--runtime", "process", "--tokens", str(tokens), "--port", "0"]) == 2
    assert "No tokens file" in capsys.readouterr().err
    main(["token", "add", "x", "--tokens", str(tokens)])
    capsys.readouterr()
    args = [
        "serve",
        "--runtime",
        "process",
        "--tokens",
        str(tokens),
        "--no-tls",
        "--host",
        "0.0.0.0",
    ]
    assert main(args) == 2
    assert "Refusing plain HTTP" in capsys.readouterr().err
    args = ["serve", "--runtime", "process", "--tokens", str(tokens), "--tls-cert", str(tokens)]
    assert main(args) == 2
    assert "both --tls-cert and --tls-key" in capsys.readouterr().err


def test_without_the_gateway_installed_serve_says_what_to_install(monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "rayfine_remote.gateway.serve", None)  # import fails
    assert main(["serve", "--runtime", "process"]) == 2
    assert "pip install 'rayfine-core[remote]'" in capsys.readouterr().err
