"""``rayfine serve`` and ``rayfine token``: run a gateway for remote clients, and manage its tokens.

The gateway lives in the ``rayfine-remote`` distribution and is imported
only when one of these commands runs; without it they say what to install.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Optional

from .. import errors
from ._util import RAW, add_runtime_option, default_runtime, print_json, print_table, status

INSTALL_HINT = "The gateway is not installed: pip install 'rayfine-core[remote]'"


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    serve = sub.add_parser(
        "serve",
        parents=[common],
        formatter_class=RAW,
        help="run a gateway: environments on this host for clients on other hosts",
        description="Serve this host's runtime to remote clients over HTTPS, for\n"
        "load_env(image, mode='remote', url=..., token=...).  Every request needs a client\n"
        "token from the tokens file (`rayfine token add NAME`); each token has its quota and\n"
        "image allow-list.  Without --tls-cert a self-signed certificate is made once; the\n"
        "line printed at start-up holds the URL with its fingerprint for clients to pin.\n\n"
        "examples:\n"
        "  rayfine token add alice --allow 'affine:*' --max-envs 32\n"
        "  rayfine serve --host 0.0.0.0 --port 8443\n"
        "  rayfine serve --runtime podman --tls-cert cert.pem --tls-key key.pem\n\n"
        "SIGTERM/SIGINT stop it (and every environment it runs); SIGHUP re-reads the tokens.",
    )
    add_runtime_option(serve, "the runtime that runs the environments")
    _tokens_option(serve)
    serve.add_argument("--name", default="default", help="this gateway's name (default: default)")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)"
    )
    serve.add_argument("--port", type=int, default=8443, help="TCP port (default: 8443; 0: any)")
    serve.add_argument("--unix-socket", metavar="PATH", help="listen on a Unix socket instead")
    serve.add_argument("--tls-cert", type=Path, metavar="PEM", help="certificate to serve")
    serve.add_argument("--tls-key", type=Path, metavar="PEM", help="its private key")
    serve.add_argument(
        "--no-tls", action="store_true", help="plain HTTP (loopback and Unix sockets only)"
    )
    serve.add_argument(
        "--insecure-bind",
        action="store_true",
        help="allow --no-tls on other addresses (a TLS-terminating proxy stands in front)",
    )
    serve.add_argument("--state-dir", type=Path, help="lock, certificate (default: per --name)")
    serve.add_argument("--audit-log", type=Path, help="append audit lines here (default: stderr)")
    serve.add_argument(
        "--lease-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="stop an environment whose client was silent this long (default: 60)",
    )
    serve.set_defaults(func=cmd_serve)

    token = sub.add_parser(
        "token",
        parents=[common],
        formatter_class=RAW,
        help="add, list or remove the gateway's client tokens",
        description="Manage the tokens file of `rayfine serve`.  `add` prints the new token once\n"
        "(only its SHA-256 is stored); a running gateway picks changes up on SIGHUP.",
    )
    actions = token.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", parents=[common], help="add a client and print its token")
    add.add_argument("client", metavar="NAME")
    _tokens_option(add)
    add.add_argument(
        "--allow",
        metavar="PATTERN",
        action="append",
        default=[],
        help="image pattern it may run, e.g. 'affine:*' (repeatable; '*' for any)",
    )
    add.add_argument("--max-envs", type=int, help="environments at once")
    add.add_argument("--starts-per-minute", type=int, help="starts in any 60 s")
    add.add_argument("--max-memory", help="largest mem_limit (also the default), e.g. 8g")
    add.add_argument("--max-cpus", type=float, help="largest cpu_limit (also the default)")
    add.add_argument("--build", action="store_true", help="may build images (tags allow-listed)")
    add.add_argument("--root", action="store_true", help="may run servers as root")
    add.set_defaults(func=cmd_token_add)
    listing = actions.add_parser("list", parents=[common], help="list clients (never tokens)")
    _tokens_option(listing)
    listing.add_argument("--json", action="store_true", help="print machine-readable JSON")
    listing.set_defaults(func=cmd_token_list)
    remove = actions.add_parser("remove", parents=[common], help="remove a client")
    remove.add_argument("client", metavar="NAME")
    _tokens_option(remove)
    remove.set_defaults(func=cmd_token_remove)


def _tokens_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tokens",
        type=Path,
        metavar="FILE",
        help="the tokens file (default: $RAYFINE_GATEWAY_TOKENS or"
        " $XDG_CONFIG_HOME/rayfine/gateway-tokens.json)",
    )


def _tokens_file(given: Optional[Path]) -> Path:
    if given is not None:
        return given
    if os.environ.get("RAYFINE_GATEWAY_TOKENS"):
        return Path(os.environ["RAYFINE_GATEWAY_TOKENS"])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "rayfine" / "gateway-tokens.json"


def _gateway() -> Any:
    try:
        import rayfine_remote.gateway.serve as serving
    except ImportError as exc:
        raise errors.ValidationError(f"{INSTALL_HINT} ({exc}).") from None
    return serving


def cmd_serve(args: argparse.Namespace) -> int:
    serving = _gateway()
    from rayfine_remote.gateway.config import GatewayConfig

    config = GatewayConfig(
        runtime=args.runtime or default_runtime(),
        tokens_file=_tokens_file(args.tokens),
        name=args.name,
        host=args.host,
        port=args.port,
        unix_socket=args.unix_socket,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls=not args.no_tls,
        insecure_bind=args.insecure_bind,
        state_dir=args.state_dir,
        audit_log=args.audit_log,
        lease_timeout=args.lease_timeout,
    )
    serving.serve(config, lambda url: print(f"rayfine gateway ready: {url}", flush=True))
    return 0


def cmd_token_add(args: argparse.Namespace) -> int:
    _gateway()
    from rayfine_remote.gateway import tokens

    settings: dict[str, Any] = {"images": args.allow}
    for key in ("max_envs", "starts_per_minute", "max_memory", "max_cpus"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    if args.build:
        settings["build"] = True
    if args.root:
        settings["root"] = True
    path = _tokens_file(args.tokens)
    token = tokens.add(path, args.client, settings)
    print(token)
    status(f"rayfine: added client {args.client!r} to {path}; the token above is shown only once.")
    if not args.allow:
        status("rayfine: it may run no image yet: add --allow PATTERN (or edit 'images').")
    status("rayfine: a running gateway picks it up on SIGHUP (kill -HUP PID).")
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    _gateway()
    from rayfine_remote.gateway import tokens

    clients = tokens.load(_tokens_file(args.tokens)).clients.values()
    if args.json:
        print_json([c.quota() for c in clients])
        return 0
    rows = [
        (
            c.name,
            c.max_envs,
            c.starts_per_minute,
            ",".join(c.images) or "-",
            "yes" if c.build else "",
        )
        for c in clients
    ]
    print_table(("CLIENT", "MAX ENVS", "STARTS/MIN", "IMAGES", "BUILD"), rows)
    return 0


def cmd_token_remove(args: argparse.Namespace) -> int:
    _gateway()
    from rayfine_remote.gateway import tokens

    tokens.remove(_tokens_file(args.tokens), args.client)
    status(f"rayfine: removed {args.client!r}; send SIGHUP to a running gateway to apply it.")
    return 0
